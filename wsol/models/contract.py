"""The backbone contract, stated once: what every method, command and export reads from a backbone module.

A backbone is any ``nn.Module`` mapping images ``(B, 3, H, W)`` to one feature map ``(B, C, H / s, W / s)``, with

=================  ========  =========================================================================
attribute          required  meaning
=================  ========  =========================================================================
``out_channels``   yes       C, the feature map's channel count (a positive int)
``stride``         yes       s, the total downsampling factor (a positive int)
``mean``           no        per-channel input mean its weights expect; ImageNet's when absent
``std``            no        per-channel input std its weights expect; ImageNet's when absent
``classifier``     no        an ``nn.Linear`` over the pooled C features that came with pretrained weights
                             (e.g. ImageNet's 1000-way ``fc``); post-hoc CAMs and ``wsol export`` use it as
                             the CAM head. Anything else, or nothing, means there is none.
=================  ========  =========================================================================

:func:`backbone_contract` checks a module against it and fills the defaults; CAM networks, ``wsol cams``,
pseudo-masks and export read a backbone only through it. :class:`wsol.models.Backbone` is a ready-made wrapper
that declares all five.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "BackboneContract", "backbone_contract"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneContract:
    """What a backbone declares, defaults filled (see the module docstring).

    Attributes:
        out_channels: channels C of the feature map.
        stride: downsampling factor of the feature map.
        mean: input normalisation mean (ImageNet's unless declared).
        std: input normalisation std (ImageNet's unless declared).
        classifier: the pretrained linear classifier over the pooled features, or None.
    """

    out_channels: int
    stride: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classifier: nn.Linear | None


def _positive_int(module: nn.Module, attr: str) -> int:
    if not hasattr(module, attr):
        raise ValueError(
            f"the backbone {type(module).__name__} must expose '{attr}' (out_channels and stride; see "
            "wsol.models.contract)"
        )
    value = getattr(module, attr)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"the backbone {type(module).__name__}'s '{attr}' must be a positive int, got {value!r}")
    return int(value)


def _triple(module: nn.Module, attr: str, default: tuple[float, float, float]) -> tuple[float, float, float]:
    value = getattr(module, attr, None)
    if value is None:
        return default
    try:
        triple = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        triple = ()
    if len(triple) != 3 or not all(math.isfinite(v) for v in triple) or (attr == "std" and min(triple) <= 0):
        raise ValueError(
            f"the backbone {type(module).__name__}'s '{attr}' must be 3 finite numbers"
            f"{' above 0' if attr == 'std' else ''} (one per RGB channel), got {value!r}"
        )
    return triple  # type: ignore[return-value]


def backbone_contract(module: nn.Module) -> BackboneContract:
    """Check ``module`` against the backbone contract and return what it declares, defaults filled.

    Raises:
        ValueError: ``out_channels`` or ``stride`` missing or not a positive int, or a declared ``mean``/``std``
            that is not 3 finite numbers (the message names the attribute and the module's class).
    """
    channels = _positive_int(module, "out_channels")
    stride = _positive_int(module, "stride")
    classifier = getattr(module, "classifier", None)
    if not (isinstance(classifier, nn.Linear) and classifier.in_features == channels):
        classifier = None
    return BackboneContract(
        channels, stride, _triple(module, "mean", IMAGENET_MEAN), _triple(module, "std", IMAGENET_STD), classifier
    )
