"""HMix and GMix (Park, Yun, Chun, NeurIPS 2022), after ``naver-ai/hmix-gmix`` ``mixup.py``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from wsol.augment.base import Mixer, MixOutput, Pairing, register_mixer
from wsol.augment.cutmix import box_mask, random_box

__all__ = ["GMix", "HMix", "gaussian_mask"]


@register_mixer("hmix")
class HMix(Mixer):
    """Hybrid of MixUp and CutMix: a CutMix box of image b over a MixUp blend of a and b.

    ``lam ~ Beta(alpha, alpha)``; a box with side ratio ``sqrt(r (1 - lam))``, clipped, kept area
    ``lam_cut = 1 - |B| / (H W)``; ``lam_mix = lam / lam_cut``;
    ``x = 1_B * x_b + (1 - 1_B) * (lam_mix x_a + (1 - lam_mix) x_b)``. The label weight of ``x_a``
    is ``lam_mix * lam_cut = lam`` exactly, since clipping is compensated in ``lam_mix``.
    ``r = 1`` is CutMix, ``r -> 0`` MixUp. Pairing defaults to the reversed batch, as in the
    reference (which requires an even batch; here an odd batch mixes its middle sample with itself).

    Boxes and masks of the batch are not mixed (evaluation-only in WSOL); ``MixOutput.mask`` is
    the per-pixel weight of image a, ``lam_mix`` outside the box and 0 inside.

    Args:
        alpha: Beta concentration.
        prob: Probability of mixing a batch.
        pairing: ``"flip"`` (reference) or ``"permute"``.
        seed: Generator seed.
        ratio: ``r`` in [0, 1]; the code default is 1.0 (plain CutMix), the paper uses 0.5.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        prob: float = 1.0,
        pairing: Pairing = "flip",
        seed: int | None = None,
        ratio: float = 0.5,
    ) -> None:
        super().__init__(alpha=alpha, prob=prob, pairing=pairing, seed=seed)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must be in [0, 1], got {ratio}")
        self.ratio = float(ratio)

    def mix(self, images: Tensor, targets: Tensor, index: Tensor) -> MixOutput:
        b, _, h, w = images.shape
        lam = self.sample_beta()
        side = math.sqrt(self.ratio * (1.0 - lam))
        box = random_box(h, w, int(h * side), int(w * side), self.generator)
        y1, y2, x1, x2 = box
        lam_cut = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)
        lam_mix = lam / lam_cut if lam_cut > 0 else 0.0
        mask = box_mask(b, h, w, box, images) * lam_mix
        mixed = images * mask + images[index] * (1.0 - mask)
        lam_t = torch.full((b,), lam_mix * lam_cut, device=images.device, dtype=images.dtype)
        return MixOutput(mixed, self.mix_targets(targets, index, lam_t), lam_t, index, mask)


def gaussian_mask(height: int, width: int, lam: float, cy: int, cx: int) -> Tensor:
    """``exp(-pi ||p - c||^2 / (lam H W))``, shape ``(H, W)``; its integral over the plane is
    ``lam H W``, so its mean is ``lam`` away from the borders.

    The reference uses ``lam H^2`` and ``arange(H)`` on both axes, i.e. square images only;
    ``H W`` reduces to it for squares and keeps the mean right otherwise.
    """
    y = (torch.arange(height, dtype=torch.float32) - cy).unsqueeze(1)
    x = (torch.arange(width, dtype=torch.float32) - cx).unsqueeze(0)
    return torch.exp(-(x * x + y * y) * math.pi / (lam * height * width))


@register_mixer("gmix")
class GMix(Mixer):
    """Gaussian MixUp: blend with a Gaussian blob around a uniformly random centre.

    ``lam ~ Beta(alpha, alpha)``. If ``lam < 0.5`` the blob ``M`` (mean ``~lam``) weights image a,
    ``x = M x_a + (1 - M) x_b``; otherwise a blob ``M'`` of mean ``~1 - lam`` weights image b,
    ``x = (1 - M') x_a + M' x_b``. The label weight of ``x_a`` is recomputed as the actual mask
    mean (smaller than ``lam`` when the blob is truncated by a border), as in the reference.
    Pairing defaults to the reversed batch, as in the reference.

    Boxes and masks of the batch are not mixed (evaluation-only in WSOL); ``MixOutput.mask`` is
    the per-pixel weight of image a.

    Args:
        alpha: Beta concentration.
        prob: Probability of mixing a batch.
        pairing: ``"flip"`` (reference) or ``"permute"``.
        seed: Generator seed.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        prob: float = 1.0,
        pairing: Pairing = "flip",
        seed: int | None = None,
    ) -> None:
        super().__init__(alpha=alpha, prob=prob, pairing=pairing, seed=seed)

    def mix(self, images: Tensor, targets: Tensor, index: Tensor) -> MixOutput:
        b, _, h, w = images.shape
        lam = min(max(self.sample_beta(), 1e-6), 1.0 - 1e-6)
        cy = int(torch.randint(h, (), generator=self.generator))
        cx = int(torch.randint(w, (), generator=self.generator))
        if lam < 0.5:
            m = gaussian_mask(h, w, lam, cy, cx)
        else:
            m = 1.0 - gaussian_mask(h, w, 1.0 - lam, cy, cx)
        mask = m.to(device=images.device, dtype=images.dtype).expand(b, 1, h, w)
        mixed = images * mask + images[index] * (1.0 - mask)
        lam_t = mask.mean(dim=(1, 2, 3))
        return MixOutput(mixed, self.mix_targets(targets, index, lam_t), lam_t, index, mask)
