"""``timm:<model>``: any timm model with ``features_only`` support, its last feature map as the backbone."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from wsol.models.backbone import IMAGENET_MEAN, IMAGENET_STD, Backbone, _hub_download, _load_local


class _LastFeature(nn.Module):
    """Return the last map of a timm ``features_only`` model (which returns a list)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[-1]


def _timm_backbone(
    model_name: str, pretrained: bool = False, weights_path: str | Path | None = None, **kwargs
) -> Backbone:
    import timm

    if not timm.list_models(model_name) and not timm.is_model(model_name):
        raise KeyError(f"unknown timm model {model_name!r}; see timm.list_models()")
    with _hub_download(f"timm:{model_name}"):
        model = timm.create_model(
            model_name,
            pretrained=pretrained and weights_path is None,
            features_only=True,
            out_indices=(-1,),
            **kwargs,
        )
    if weights_path is not None:
        # A full classifier checkpoint carries head weights that the feature model does not have.
        _load_local(model, weights_path, ignore_prefixes=("fc.", "head.", "classifier.", "last_linear."))
    info = model.feature_info
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return Backbone(
        _LastFeature(model),
        info.channels()[-1],
        info.reduction()[-1],
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
    )
