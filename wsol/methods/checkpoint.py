"""Load a trained method from its Lightning checkpoint, whichever method class wrote it.

Checkpoints are untrusted files: they are read with ``torch.load(weights_only=True)``, which unpickles
only tensors and plain containers, so a crafted file cannot run code. Every failure names the file.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from wsol.methods.base import WSOLModule
from wsol.methods.registry import METHODS
from wsol.models.cam_net import CAMNet

__all__ = ["METHOD_KEY", "checkpoint_method", "load_checkpoint", "load_model", "read_checkpoint"]

# Written by WSOLModule.on_save_checkpoint: the dotted path of the class that trained the weights.
METHOD_KEY = "wsol_method"


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
    dotted = checkpoint_method(path)
    class_name = dotted.rpartition(".")[2]
    if method_class is not None:
        cls: Any = method_class
    elif class_name not in METHODS:
        raise ValueError(
            f"{path} names {dotted!r}, which is not a registered training method ({', '.join(METHODS.names())}): "
            "register its class with @wsol.methods.register_method or pass it as method_class"
        )
    else:
        cls = METHODS.get(class_name)  # by name: a checkpoint outlives a move of its class between modules
    if not (isinstance(cls, type) and issubclass(cls, WSOLModule)):
        raise ValueError(f"{path} names {dotted!r}, which is not a wsol method class")
    model = cls.load_from_checkpoint(path, map_location=map_location, pretrained=False, weights_only=True)
    return model.eval()


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
