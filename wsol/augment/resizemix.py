"""ResizeMix (Qin et al., arXiv 2012.11101), after OpenMixup ``augments/resizemix.py``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from wsol.augment.base import Mixer, MixOutput, Pairing, register_mixer
from wsol.augment.cutmix import box_mask, random_box

__all__ = ["ResizeMix"]


@register_mixer("resizemix")
class ResizeMix(Mixer):
    """Paste the whole image b, resized into a random box, onto image a.

    A scale ``tau ~ U(scope)`` (``(0.1, 0.8)``, the paper's setting) gives a box of nominal size
    ``(tau H, tau W)`` with a uniform centre, clipped to the image; image b is resized (nearest by
    default) to the clipped box and pasted. ``lam = 1 - |box| / (H W)``, so ``1 - lam ~ tau^2``.
    With ``use_alpha``, ``tau ~ Beta(alpha, alpha)``, redrawn uniformly from ``scope`` when outside.

    A clipped box squashes image b (its aspect ratio changes), as in the reference. Boxes and masks
    of the batch are not transformed: image a's object may be covered and image b's object appears
    shrunk at an offset. They are evaluation-only in WSOL; ``MixOutput.mask`` marks the box.

    Args:
        alpha: Beta concentration, used only with ``use_alpha``.
        prob: Probability of mixing a batch.
        pairing: ``"permute"`` (reference) or ``"flip"``.
        seed: Generator seed.
        scope: Range of the scale ``tau``.
        use_alpha: Draw ``tau`` from Beta(alpha, alpha) instead of the uniform.
        interpolation: ``F.interpolate`` mode used to resize image b.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        prob: float = 1.0,
        pairing: Pairing = "permute",
        seed: int | None = None,
        scope: tuple[float, float] = (0.1, 0.8),
        use_alpha: bool = False,
        interpolation: str = "nearest",
    ) -> None:
        super().__init__(alpha=alpha, prob=prob, pairing=pairing, seed=seed)
        if not 0.0 < scope[0] <= scope[1] <= 1.0:
            raise ValueError(f"scope must satisfy 0 < low <= high <= 1, got {scope}")
        self.scope = (float(scope[0]), float(scope[1]))
        self.use_alpha = use_alpha
        self.interpolation = interpolation

    def mix(self, images: Tensor, targets: Tensor, index: Tensor) -> MixOutput:
        b, _, h, w = images.shape
        low, high = self.scope
        tau = self.sample_beta() if self.use_alpha else self.uniform(low, high)
        if not low <= tau <= high:
            tau = self.uniform(low, high)
        box = random_box(h, w, int(h * tau), int(w * tau), self.generator)
        y1, y2, x1, x2 = box
        mixed = images.clone()
        if y2 > y1 and x2 > x1:
            mixed[:, :, y1:y2, x1:x2] = F.interpolate(images[index], size=(y2 - y1, x2 - x1), mode=self.interpolation)
        lam = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)
        lam_t = torch.full((b,), lam, device=images.device, dtype=images.dtype)
        mask = box_mask(b, h, w, box, images)
        return MixOutput(mixed, self.mix_targets(targets, index, lam_t), lam_t, index, mask)
