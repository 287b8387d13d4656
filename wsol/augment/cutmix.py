"""CutMix (Yun et al., ICCV 2019, arXiv 1905.04899), after ``clovaai/CutMix-PyTorch``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from wsol.augment.base import Mixer, MixOutput, Pairing, register_mixer

__all__ = ["CutMix", "box_mask", "random_box"]


def random_box(
    height: int, width: int, cut_h: int, cut_w: int, generator: torch.Generator
) -> tuple[int, int, int, int]:
    """Box of nominal size ``cut_h x cut_w`` with a uniform centre, clipped to the image.

    Reproduces ``rand_bbox`` of the CutMix code: corners ``c -/+ cut // 2`` clipped to
    ``[0, size]``, so boxes near a border are smaller than nominal.

    Returns:
        ``(y1, y2, x1, x2)`` with exclusive ends.
    """
    cy = int(torch.randint(height, (), generator=generator))
    cx = int(torch.randint(width, (), generator=generator))
    y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y1, y2, x1, x2


def box_mask(batch: int, height: int, width: int, box: tuple[int, int, int, int], like: Tensor) -> Tensor:
    """``(B, 1, H, W)`` weight of image a: 0 inside ``box``, 1 outside (an expanded view)."""
    y1, y2, x1, x2 = box
    mask = torch.ones(1, 1, height, width, device=like.device, dtype=like.dtype)
    mask[..., y1:y2, x1:x2] = 0
    return mask.expand(batch, 1, height, width)


@register_mixer("cutmix")
class CutMix(Mixer):
    """Paste a box of image b into image a; the targets are mixed by the kept area.

    Reference procedure (CutMix ``train.py``): ``lam ~ Beta(alpha, alpha)``, one box per batch with
    side ratio ``sqrt(1 - lam)``, uniform centre, clipped at the borders; then ``lam`` is
    recomputed from the clipped area, ``lam = 1 - |box| / (H W)`` (issue #1 of the reference).

    Boxes and masks of the batch are not updated: part of image a's object may be covered and
    image b's object is partially visible. They are evaluation-only in WSOL, so training is
    unaffected; use ``MixOutput.mask`` if a loss needs to know which pixels came from where.

    Args:
        alpha: Beta concentration (1.0 in the reference).
        prob: Probability of mixing a batch (0.5 for CIFAR PyramidNet, 1.0 for ImageNet).
        pairing: ``"permute"`` (reference) or ``"flip"``.
        seed: Generator seed.
        correct_lam: Recompute ``lam`` from the clipped area (reference). False keeps the sampled
            value for the targets (timm's option; said to help on fine-grained CUB); ``lam`` then
            differs from the mask mean.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        prob: float = 1.0,
        pairing: Pairing = "permute",
        seed: int | None = None,
        correct_lam: bool = True,
    ) -> None:
        super().__init__(alpha=alpha, prob=prob, pairing=pairing, seed=seed)
        self.correct_lam = correct_lam

    def mix(self, images: Tensor, targets: Tensor, index: Tensor) -> MixOutput:
        b, _, h, w = images.shape
        lam = self.sample_beta()
        cut_rat = math.sqrt(1.0 - lam)
        box = random_box(h, w, int(h * cut_rat), int(w * cut_rat), self.generator)
        y1, y2, x1, x2 = box
        mixed = images.clone()
        mixed[:, :, y1:y2, x1:x2] = images[index, :, y1:y2, x1:x2]
        if self.correct_lam:
            lam = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)
        lam_t = torch.full((b,), lam, device=images.device, dtype=images.dtype)
        mask = box_mask(b, h, w, box, images)
        return MixOutput(mixed, self.mix_targets(targets, index, lam_t), lam_t, index, mask)
