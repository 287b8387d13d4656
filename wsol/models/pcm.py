"""SEAM's pixel correlation module (PCM) and the CAM normalisations around it.

After ``YudeWang/SEAM`` ``network/resnet38_SEAM.py::Net.forward/PCM`` and
``tool/visualization.py::max_norm`` (here :func:`relu_minmax`; docs/methods.md §1.1, §1.3). Channel 0 of every
map with a background slot is the background.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PCM", "pcm_input", "relu_minmax", "with_background"]


def relu_minmax(cams: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-map min-max normalisation of ReLU'd maps ``(..., h, w)``, ``ReLU(ReLU(p) - min - eps) / (max - min + eps)``.

    The torch branch of SEAM's ``visualization.max_norm`` (a min-max norm despite that name), used on the training
    CAMs and on the combined maps of WSSS inference; an all-zero map stays zero.
    """
    cams = F.relu(cams)
    hi = cams.amax(dim=(-2, -1), keepdim=True)
    lo = cams.amin(dim=(-2, -1), keepdim=True)
    return F.relu(cams - lo - eps) / (hi - lo + eps)


def with_background(fg: Tensor) -> Tensor:
    """Prepend the background channel ``1 - max_c fg_c`` to normalised foreground maps ``(B, K, h, w)``."""
    return torch.cat([1.0 - fg.amax(dim=1, keepdim=True), fg], dim=1)


@torch.no_grad()
def pcm_input(cams: Tensor, eps: float = 1e-5) -> Tensor:
    """The detached, one-hot-ish map the PCM propagates, ``(B, K + 1, h, w)`` from raw fg CAMs ``(B, K, h, w)``.

    Max-only normalisation ``ReLU(ReLU(p) - eps) / (max + eps)``, background ``1 - max_c``, and every
    foreground channel that is not the per-pixel argmax zeroed (``Net.forward`` of the SEAM code).
    """
    cams = F.relu(cams.detach())
    norm = F.relu(cams - eps) / (cams.amax(dim=(2, 3), keepdim=True) + eps)
    top = norm.amax(dim=1, keepdim=True)
    return torch.cat([1.0 - top, norm * (norm >= top)], dim=1)


class PCM(nn.Module):
    """Pixel correlation module: refine a CAM by affinity-weighted averaging over all pixels.

    ``f = f9([resize(image), ReLU(proj_i(feat_i.detach()))])`` is L2-normalised per pixel, the
    affinity ``A = ReLU(f^T f)`` (cosine similarity) is normalised over its first index, and
    ``y = x A`` (SEAM Eq. (5), arXiv 2004.04581). Gradients reach only ``proj_i`` and ``f9``: the
    features and the input map are detached, as in the SEAM code.

    Args:
        in_channels: channels of each feature map fed to the module (SEAM: conv4 512, conv5 1024).
        proj_channels: channels of each projection (SEAM: 64 for conv4, 128 for conv5).
        embed_channels: channels of the embedding ``f9`` (192 in SEAM).
    """

    def __init__(self, in_channels: Sequence[int], proj_channels: int = 128, embed_channels: int = 192) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(c, proj_channels, 1, bias=False) for c in in_channels)
        self.embed = nn.Conv2d(3 + proj_channels * len(in_channels), embed_channels, 1, bias=False)
        for conv in self.proj:
            nn.init.kaiming_normal_(conv.weight)
        nn.init.xavier_uniform_(self.embed.weight, gain=4)

    def affinity(self, image: Tensor, features: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
        """Column-normalised affinity ``(B, hw, hw)``; column ``j`` holds the weights of pixel ``j``'s average."""
        parts = [F.interpolate(image, size, mode="bilinear", align_corners=True)]
        for proj, feat in zip(self.proj, features, strict=True):
            feat = feat.detach()
            if feat.shape[-2:] != size:
                feat = F.interpolate(feat, size, mode="bilinear", align_corners=True)
            parts.append(F.relu(proj(feat)))
        f = self.embed(torch.cat(parts, dim=1)).flatten(2)
        f = f / (f.norm(dim=1, keepdim=True) + 1e-5)
        aff = F.relu(f.transpose(1, 2) @ f)
        return aff / (aff.sum(dim=1, keepdim=True) + 1e-5)

    def forward(self, cams: Tensor, image: Tensor, features: Sequence[Tensor]) -> Tensor:
        """Refined maps ``(B, C, h, w)`` of ``cams`` ``(B, C, h, w)`` (e.g. :func:`pcm_input`)."""
        b, c, h, w = cams.shape
        aff = self.affinity(image, features, (h, w))
        return (cams.flatten(2) @ aff).view(b, c, h, w)
