"""``timm:<model>``: any timm model with ``features_only`` support, its last feature map as the backbone.

The prefix ``timm:`` is resolved by the backbone registry (:meth:`wsol.registry.Registry.register_prefix`); timm
itself is imported only when such a backbone is built.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from wsol.models.backbone import BACKBONES, Backbone
from wsol.models.contract import IMAGENET_MEAN, IMAGENET_STD
from wsol.models.weights import hub_download, load_weights

__all__ = ["timm_backbone"]


class _LastFeature(nn.Module):
    """Return the last map of a timm ``features_only`` model (which returns a list)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[-1]


@BACKBONES.register_prefix("timm:")
def _resolve(model_name: str) -> Callable[..., Backbone]:
    """The builder of ``timm:<model_name>`` (nothing is imported or built until it is called)."""
    return partial(timm_backbone, model_name)


def timm_backbone(
    model_name: str, pretrained: bool = False, weights_path: str | Path | None = None, **kwargs
) -> Backbone:
    """The last ``features_only`` map of the timm model ``model_name``, with its pretrained config's mean and std.

    Raises:
        KeyError: timm knows no such model.
    """
    import timm

    if not timm.list_models(model_name) and not timm.is_model(model_name):
        raise KeyError(f"unknown timm model {model_name!r}; see timm.list_models()")
    with hub_download(f"timm:{model_name}"):
        model = timm.create_model(
            model_name,
            pretrained=pretrained and weights_path is None,
            features_only=True,
            out_indices=(-1,),
            **kwargs,
        )
    if weights_path is not None:
        # A full classifier checkpoint carries head weights that the feature model does not have.
        load_weights(model, weights_path, ignore_prefixes=("fc.", "head.", "classifier.", "last_linear."))
    info = model.feature_info
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return Backbone(
        _LastFeature(model),
        info.channels()[-1],
        info.reduction()[-1],
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
    )
