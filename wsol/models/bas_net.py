"""BAS's network: a CAM network plus a generator of one foreground map per class.

Wu, Zhai & Cao, CVPR 2022 (arXiv 2112.00580); see :mod:`wsol.methods.bas` for the sources and the training system.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from wsol.models.cam_net import CAMNet
from wsol.models.head import CAMHead

__all__ = ["BASNet", "ForegroundGenerator", "topk_mean_map"]


def topk_mean_map(maps: Tensor, logits: Tensor, k: int) -> Tensor:
    """The BAS inference map ``(B, h, w)``: the mean of the maps ``(B, K, h, w)`` of the ``k`` top-scoring classes."""
    if not 1 <= k <= maps.shape[1]:
        raise ValueError(f"k must be in [1, {maps.shape[1]}], got {k}")
    top = logits.topk(k, dim=1).indices
    return maps.gather(1, top[:, :, None, None].expand(-1, -1, *maps.shape[2:])).mean(dim=1)


class ForegroundGenerator(nn.Module):
    """The foreground prediction map generator: conv3x3-ReLU-conv1x1-sigmoid, one map in [0, 1] per class.

    Args:
        in_channels: channels of the backbone's feature map.
        hidden_channels: width of the 3x3 convolution.
        num_classes: number of classes K.
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_classes: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden_channels, num_classes, 1),
        )
        nn.init.kaiming_normal_(self.layers[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.layers[0].bias)

    def forward(self, features: Tensor) -> Tensor:
        """Foreground maps ``(B, K, h, w)`` in [0, 1]."""
        return torch.sigmoid(self.layers(features))


class BASNet(CAMNet):
    """Backbone, CAM head (the logits) and :class:`ForegroundGenerator` (the localization maps).

    The maps of ``forward_with_cams`` are the generator's, of every class (``inference_topk = 1``) or the mean of the
    top-k predicted classes' maps in every channel (the paper's inference).

    Args:
        backbone: a :class:`~wsol.models.Backbone`.
        num_classes: K.
        generator_channels: width of the generator's 3x3 convolution; None for ``min(C, 512)``.
        inference_topk: number of most probable classes whose maps are averaged at inference.
    """

    def __init__(
        self, backbone: nn.Module, num_classes: int, generator_channels: int | None = None, inference_topk: int = 1
    ) -> None:
        if not 1 <= inference_topk <= num_classes:
            raise ValueError(f"inference_topk must be in [1, num_classes={num_classes}], got {inference_topk}")
        channels = backbone.out_channels
        super().__init__(backbone, CAMHead(channels, num_classes))
        self.generator = ForegroundGenerator(channels, generator_channels or min(channels, 512), num_classes)
        self.inference_topk = int(inference_topk)

    def new_modules(self) -> tuple[nn.Module, ...]:
        """The CAM head and the foreground generator."""
        return (self.head, self.generator)

    def forward_with_cams(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The head's logits on the whole features and the generator's maps ``(B, K, h, w)`` in [0, 1]."""
        features = self.features(x)
        logits, maps = self.head(features), self.generator(features)
        if self.inference_topk > 1:
            maps = topk_mean_map(maps, logits, self.inference_topk)[:, None].expand_as(maps).contiguous()
        return logits, maps
