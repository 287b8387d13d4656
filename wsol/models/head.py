"""The CAM head: a 1x1 convolution whose weights are the classifier's.

By linearity, ``GAP(conv1x1(f)) == linear(GAP(f))``, so one forward yields both the logits and the
class activation maps of every class (Zhou et al., CVPR 2016, Eq. (1)-(2)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CAMHead(nn.Module):
    """Bias-carrying 1x1 convolution from ``in_channels`` features to ``num_classes`` maps.

    Args:
        in_channels: channels of the backbone's feature map.
        num_classes: number of classes K.
        bias: whether the classifier has a bias (it shifts each class map by a constant, which the
            min-max normalisation of the evaluation protocol removes).
    """

    def __init__(self, in_channels: int, num_classes: int, bias: bool = True) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size=1, bias=bias)

    @property
    def weight(self) -> torch.Tensor:
        """Classifier weights of shape ``(K, C, 1, 1)``."""
        return self.conv.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """Classifier bias of shape ``(K,)`` or ``None``."""
        return self.conv.bias

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` from features ``(B, C, h, w)``: the classifier applied after GAP."""
        return F.linear(features.mean(dim=(2, 3)), self.conv.weight.flatten(1), self.conv.bias)

    def class_maps(self, features: torch.Tensor) -> torch.Tensor:
        """Class activation maps ``(B, K, h, w)``: the classifier applied at every location."""
        return self.conv(features)
