"""MixUp (Zhang et al., ICLR 2018, arXiv 1710.09412)."""

from __future__ import annotations

import torch
from torch import Tensor

from wsol.augment.base import Mixer, MixOutput, register_mixer

__all__ = ["MixUp"]


@register_mixer("mixup")
class MixUp(Mixer):
    """Convex combination of two images and their targets.

    ``x = lam * x_a + (1 - lam) * x_b`` and ``y = lam * y_a + (1 - lam) * y_b`` with one
    ``lam ~ Beta(alpha, alpha)`` per batch, as in the reference code. ``alpha = 1`` is the CIFAR
    setting, ``0.2`` the ImageNet one (and the Mixup-CAM re-implementation's).

    No pixel moves, so boxes and segmentation masks stay valid geometrically, but both images'
    objects are present everywhere; they are not mixed (they are evaluation-only in WSOL).
    ``MixOutput.mask`` is None.
    """

    def mix(self, images: Tensor, targets: Tensor, index: Tensor) -> MixOutput:
        lam = self.sample_beta()
        mixed = images * lam + images[index] * (1.0 - lam)
        lam_t = torch.full((images.shape[0],), lam, device=images.device, dtype=images.dtype)
        return MixOutput(mixed, self.mix_targets(targets, index, lam_t), lam_t, index, None)
