"""Load a trained method from its Lightning checkpoint, whichever method class wrote it.

Checkpoints are untrusted files: they are read with ``torch.load(weights_only=True)``, which unpickles
only tensors and plain containers, so a crafted file cannot run code. Every failure names the file.

A checkpoint names what it needs (``wsol_needs``, written by :meth:`WSOLModule.on_save_checkpoint`): the registered
names of its method and backbone, the backbone's arguments, and the plugin modules that registered them. Loading
looks the names up in the registries and never imports a module the file names: when a plugin is missing, it ends
in one line, ``needs plugin X: pass --import X``, and the user decides.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from wsol.methods.base import WSOLModule
from wsol.methods.registry import METHODS
from wsol.models.backbone import BACKBONES, rebuild_backbone
from wsol.models.cam_net import CAMNet
from wsol.plugins import plugin_hint

__all__ = ["METHOD_KEY", "NEEDS_KEY", "checkpoint_method", "load_checkpoint", "load_model", "read_checkpoint"]

# Written by WSOLModule.on_save_checkpoint: the dotted path of the class that trained the weights.
METHOD_KEY = "wsol_method"
# Written beside it: {"method": {"name", "plugin"}, "backbone": {"name", "kwargs", "plugin"} or a class record}.
NEEDS_KEY = "wsol_needs"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, read without running code from the file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is empty, truncated, not a torch checkpoint, or holds objects other than
            tensors and plain containers (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path} is empty (0 bytes)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses any global outside torch's allow-list: a crafted or foreign pickle.
        culprit = next((ln.strip() for ln in str(err).splitlines() if "GLOBAL" in ln), None)
        if culprit is None:
            raise ValueError(f"checkpoint {path} cannot be read (truncated or not a torch checkpoint)") from None
        raise ValueError(f"checkpoint {path} was refused: it holds objects other than tensors ({culprit})") from None
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file; all mean the same
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"checkpoint {path} cannot be read (truncated or not a torch checkpoint): {reason}") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a checkpoint dictionary")
    return ckpt


def checkpoint_method(path: str | Path) -> str:
    """Dotted class path of the method stored in a checkpoint, e.g. ``"wsol.methods.seam.SEAM"``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the checkpoint cannot be read safely or was not written by a :class:`WSOLModule`.
    """
    ckpt = read_checkpoint(path)
    if METHOD_KEY not in ckpt:
        raise ValueError(f"{path} was not written by a wsol method (no '{METHOD_KEY}' entry)")
    return str(ckpt[METHOD_KEY])


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", method_class: type[WSOLModule] | None = None
) -> WSOLModule:
    """Rebuild the training system that wrote ``path`` (its class is recorded in the checkpoint), in eval mode.

    For fine-tuning, validation and the study; commands that only run the network use :func:`load_model`.
    Backbone weights come from the checkpoint; pretrained weights are never fetched again. The recorded class
    is looked up in the training-method registry (:func:`wsol.methods.list_methods`), so a file never chooses
    which module runs; a method defined elsewhere registers with ``@register_method`` or is passed as
    ``method_class``. Checkpoints of the earlier layout (network weights at the top of the state dict) load too.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the checkpoint cannot be read safely, holds no wsol method or names an unregistered class.
    """
    ckpt = read_checkpoint(path)
    if METHOD_KEY not in ckpt:
        raise ValueError(f"{path} was not written by a wsol method (no '{METHOD_KEY}' entry)")
    dotted = str(ckpt[METHOD_KEY])
    needs = ckpt.get(NEEDS_KEY) if isinstance(ckpt.get(NEEDS_KEY), dict) else {}
    method = needs.get("method") if isinstance(needs.get("method"), dict) else {}
    class_name = str(method.get("name") or dotted.rpartition(".")[2])
    if method_class is not None:
        cls: Any = method_class
    elif class_name not in METHODS:
        plugin = method.get("plugin")
        if plugin:
            raise ValueError(f"{path} needs plugin {plugin}: {plugin_hint(plugin)} (training method {class_name!r})")
        raise ValueError(
            f"{path} names {dotted!r}, which is not a registered training method ({', '.join(METHODS.names())}): "
            "register its class with @wsol.methods.register_method or pass it as method_class"
        )
    else:
        cls = METHODS.get(class_name)  # by name: a checkpoint outlives a move of its class between modules
    if not (isinstance(cls, type) and issubclass(cls, WSOLModule)):
        raise ValueError(f"{path} names {dotted!r}, which is not a wsol method class")
    overrides = _backbone_overrides(path, ckpt, needs.get("backbone"))
    model = cls.load_from_checkpoint(path, map_location=map_location, pretrained=False, weights_only=True, **overrides)
    return model.eval()


def _backbone_overrides(path: Path | str, ckpt: dict[str, Any], record: Any) -> dict[str, Any]:
    """The ``backbone`` argument to rebuild the checkpoint's method with: none when its hyper-parameters name a
    registered backbone; the module its record describes when it was trained with a module (never imported)."""
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt.get("hyper_parameters"), dict) else {}
    name = hparams.get("backbone")
    if isinstance(name, str):
        if name not in BACKBONES and not any(name.startswith(p) for p in BACKBONES.prefixes()):
            plugin = record.get("plugin") if isinstance(record, dict) else None
            if plugin:
                raise ValueError(f"{path} needs plugin {plugin}: {plugin_hint(plugin)} (backbone {name!r})")
            BACKBONES.get(name)  # raises, listing the registered names
        return {}
    if not isinstance(record, dict):
        raise ValueError(
            f"{path} was trained with a backbone module and records no name for it (a checkpoint of an earlier "
            "version): load it with method_class and backbone= in Python"
        )
    return {"backbone": rebuild_backbone(record, str(path))}


def load_model(
    path: str | Path, map_location: str | torch.device = "cpu", method_class: type[WSOLModule] | None = None
) -> CAMNet:
    """The trained network of a checkpoint of any registered method (a :class:`~wsol.models.cam_net.CAMNet`), in
    eval mode: logits, ``forward_with_cams`` and ``cams``, without the losses and optimizers.

    The one checkpoint loader of the commands (``wsol cams``, ``export``, ``pseudo-masks``, ``leaderboard``), so a
    checkpoint of any method works everywhere without a class flag. Reads the file as :func:`load_checkpoint`
    does (``weights_only``; the class comes from the registry, never from the file).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the checkpoint cannot be read safely, holds no wsol method or names an unregistered class.
    """
    return load_checkpoint(path, map_location, method_class).net.eval()
