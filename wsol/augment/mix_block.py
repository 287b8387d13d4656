"""AutoMix's Mix Block: λ-conditioned cross-attention from two images' feature maps to a mixing mask
(Liu et al., ECCV 2022, arXiv 2103.13027; docs/methods.md §19.1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MixBlock"]


class MixBlock(nn.Module):
    """Predicts, for a pair of feature maps and a ratio λ, the weight of image a at every pixel.

    With ``z_a`` the features of image a with λ appended as a constant channel, and ``z_b`` those of its partner
    with ``1 - λ``::

        P = softmax_j( (W_q z_a)_i . (W_q z_b)_j / sqrt(d) )      attention of a's positions over b's
        v = W_v z_b                                                 one value per position of b
        m_b = sigmoid( up( P v ) )                                  weight of image b, upsampled (nearest)
        mask = 1 - m_b                                              weight of image a

    Weights start near zero (normal, std 0.01), so an untrained block gives ``mask ≈ 0.5`` everywhere.

    Args:
        in_channels: channels of the feature maps.
        reduction: the attention's embedding has ``in_channels // reduction`` channels.
        lam_channel: append λ (and ``1 - λ``) as a channel; without it the block sees λ only through its loss.
    """

    def __init__(self, in_channels: int, reduction: int = 2, lam_channel: bool = True) -> None:
        super().__init__()
        if in_channels < 1 or reduction < 1:
            raise ValueError(f"in_channels and reduction must be >= 1, got {in_channels} and {reduction}")
        self.lam_channel = bool(lam_channel)
        inputs = in_channels + int(self.lam_channel)
        self.embed_channels = max(in_channels // reduction, 1)
        self.query = nn.Conv2d(inputs, self.embed_channels, kernel_size=1)
        self.value = nn.Conv2d(inputs, 1, kernel_size=1)
        for conv in (self.query, self.value):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: Tensor, lam: float, index: Tensor, size: tuple[int, int]) -> Tensor:
        """Image a's weight ``(B, 1, *size)`` in (0, 1) for the pairs ``(i, index[i])``.

        Args:
            features: ``(B, C, h, w)`` feature maps of the batch.
            lam: the ratio λ the mask should give image a (on average).
            index: ``(B,)`` partner of each sample.
            size: the images' ``(H, W)``.
        """
        features = F.group_norm(features.float(), 1)  # each map standardised: the block's steps keep their size
        z_a, z_b = features, features[index]
        if self.lam_channel:
            ones = torch.ones_like(features[:, :1])
            z_a = torch.cat([z_a, ones * (lam - 0.5)], dim=1)
            z_b = torch.cat([z_b, ones * (0.5 - lam)], dim=1)
        b, _, h, w = features.shape
        query = self.query(z_a).flatten(2).transpose(1, 2).float()  # (B, hw, d)
        key = self.query(z_b).flatten(2).float()  # (B, d, hw)
        attention = torch.softmax(query @ key / math.sqrt(self.embed_channels), dim=-1)  # (B, hw_a, hw_b)
        value = self.value(z_b).flatten(2).transpose(1, 2).float()  # (B, hw, 1)
        logit_b = (attention @ value).transpose(1, 2).reshape(b, 1, h, w)
        logit_b = F.interpolate(logit_b, size=size, mode="nearest")
        return 1.0 - torch.sigmoid(logit_b)
