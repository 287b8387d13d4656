"""Spectral-residual saliency (Hou & Zhang, CVPR 2007), in numpy with an OpenCV blur.

The log amplitude spectrum of the grey image minus its 3x3 local mean is the "residual"; transformed back with
the original phase and squared, it marks what the image's average spectrum does not explain. The map is then
Gaussian-smoothed. Frequencies absent from the image (amplitude numerically zero, as in flat or exactly periodic
synthetic images) carry no residual and are left out of their neighbours' local means; on natural images no
frequency is absent and this is the paper's formula.
"""

from __future__ import annotations

import cv2
import numpy as np

from wsol.saliency.registry import register_cue

__all__ = ["spectral_residual"]

_ABSENT = 1e-9  # amplitudes below this fraction of the largest count as absent


def _local_mean(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    # Mean of the present bins in each 3x3 window, periodic like the spectrum itself.
    total = np.zeros_like(values)
    count = np.zeros_like(values)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            total += np.roll(np.where(present, values, 0.0), (dy, dx), axis=(0, 1))
            count += np.roll(present.astype(np.float64), (dy, dx), axis=(0, 1))
    return total / np.maximum(count, 1.0)


@register_cue("spectral_residual")
def spectral_residual(image: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """The spectral-residual map of an ``(H, W, 3)`` uint8 RGB image (float64, not normalised).

    Args:
        image: The image (the paper works at about 64 px, the study's size).
        sigma: Gaussian smoothing of the squared map in pixels (default ``3 * side / 64``).
    """
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64) / 255.0
    spectrum = np.fft.fft2(gray)
    amplitude = np.abs(spectrum)
    if amplitude.max() == 0:
        return np.zeros(gray.shape)
    present = amplitude > _ABSENT * amplitude.max()
    log_amp = np.log(np.where(present, amplitude, 1.0))
    residual = np.where(present, np.exp(log_amp - _local_mean(log_amp, present)), 0.0)
    back = np.fft.ifft2(residual * np.exp(1j * np.angle(spectrum)))
    energy = np.abs(back) ** 2
    sigma = 3.0 * max(gray.shape) / 64.0 if sigma is None else sigma
    return cv2.GaussianBlur(energy, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
