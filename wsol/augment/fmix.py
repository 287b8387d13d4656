"""FMix (Harris et al., arXiv 2002.12047), after ``ecs-vlc/FMix`` ``fmix.py::sample_mask``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from wsol.augment.base import Mixer, MixOutput, Pairing, register_mixer

__all__ = ["FMix", "low_frequency_image", "binarise_mask"]


def low_frequency_image(height: int, width: int, decay_power: float, generator: torch.Generator) -> Tensor:
    """Grey image with a ``1 / f^decay_power`` spectrum, shape ``(H, W)`` (FMix §3).

    A complex Gaussian spectrum on the rFFT grid is scaled by ``1 / max(f, 1 / max(H, W))^d`` and
    inverted with ``irfft2``; only the ordering of the values matters downstream.
    """
    fy = torch.fft.fftfreq(height).unsqueeze(1)
    fx = torch.fft.rfftfreq(width).unsqueeze(0)
    freqs = torch.sqrt(fx * fx + fy * fy)
    scale = 1.0 / freqs.clamp_min(1.0 / max(height, width)) ** decay_power
    param = torch.randn(*freqs.shape, 2, generator=generator)
    spectrum = torch.complex(param[..., 0], param[..., 1]) * scale
    return torch.fft.irfft2(spectrum, s=(height, width))


def binarise_mask(grey: Tensor, lam: float, coin: float, max_soft: float = 0.0) -> Tensor:
    """Set the ``ceil`` or ``floor`` (``coin > 0.5``) of ``lam * H * W`` largest pixels to 1.

    With ``max_soft > 0`` a linear ramp of ``2 * soft`` pixels around the threshold is added
    (mask mean unchanged).
    """
    n = grey.numel()
    num = math.ceil(lam * n) if coin > 0.5 else math.floor(lam * n)
    soft = int(n * min(max_soft, lam, 1.0 - lam))
    order = grey.reshape(-1).argsort(descending=True)
    flat = torch.zeros(n)
    flat[order[: num + soft]] = 1.0
    if soft > 0:
        flat[order[num - soft : num + soft]] = torch.linspace(1.0, 0.0, 2 * soft)
    return flat.reshape(grey.shape)


@register_mixer("fmix")
class FMix(Mixer):
    """Mix two images through a binary mask thresholded from low-frequency noise.

    ``lam ~ Beta(alpha, alpha)`` (``Beta(alpha + 1, alpha)`` with ``reformulate``); one mask of the
    images' own size per batch (the reference's fixed ``size=(32, 32)`` silently mis-broadcasts at
    other resolutions); ``x = M * x_a + (1 - M) * x_b``. ``lam`` is reported as the mask mean, i.e.
    the ceil/floor of the sampled value over ``H W``.

    Boxes and masks of the batch are not mixed; the blob-shaped pasted regions make them invalid for
    the mixed image. They are evaluation-only in WSOL; ``MixOutput.mask`` is ``M``.

    Args:
        alpha: Beta concentration (1.0 in the reference).
        prob: Probability of mixing a batch.
        pairing: ``"permute"`` (reference) or ``"flip"``.
        seed: Generator seed.
        decay_power: Spectrum decay ``d`` (3 in the reference).
        max_soft: Width of the soft ramp at the threshold, as a fraction of pixels (0: binary).
        reformulate: Sample ``lam`` from ``Beta(alpha + 1, alpha)``.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        prob: float = 1.0,
        pairing: Pairing = "permute",
        seed: int | None = None,
        decay_power: float = 3.0,
        max_soft: float = 0.0,
        reformulate: bool = False,
    ) -> None:
        super().__init__(alpha=alpha, prob=prob, pairing=pairing, seed=seed)
        self.decay_power = float(decay_power)
        self.max_soft = float(max_soft)
        self.reformulate = reformulate

    def sample_mask(self, height: int, width: int) -> tuple[Tensor, float]:
        """One ``(H, W)`` mask (CPU) and its sampled lambda."""
        lam = self.sample_beta(self.alpha + 1.0, self.alpha) if self.reformulate else self.sample_beta()
        grey = low_frequency_image(height, width, self.decay_power, self.generator)
        coin = self.uniform()
        return binarise_mask(grey, lam, coin, self.max_soft), lam

    def mix(self, images: Tensor, targets: Tensor, index: Tensor) -> MixOutput:
        b, _, h, w = images.shape
        m, _ = self.sample_mask(h, w)
        lam = float(m.mean())
        mask = m.to(device=images.device, dtype=images.dtype).expand(b, 1, h, w)
        mixed = images * mask + images[index] * (1.0 - mask)
        lam_t = torch.full((b,), lam, device=images.device, dtype=images.dtype)
        return MixOutput(mixed, self.mix_targets(targets, index, lam_t), lam_t, index, mask)
