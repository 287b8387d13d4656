"""Backgroundness, the "+" of MB+ (Zhang et al., ICCV 2015), and MB+ itself.

The four border strips (about a tenth of the side each) stand for the background. For each strip, a pixel's
Mahalanobis distance in Lab to the strip's mean colour (under the strip's covariance) is divided by its largest
value over the image. A pixel's backgroundness is the sum of its four normalised distances minus the largest of
them, so one strip that touches the object cannot make the object look like background.
"""

from __future__ import annotations

import numpy as np

from wsol.saliency.color import minmax, to_lab
from wsol.saliency.mbd import DEFAULT_PASSES, mbd_lab
from wsol.saliency.registry import register_cue

__all__ = ["backgroundness", "backgroundness_lab", "border_strips", "mbplus"]


def border_strips(height: int, width: int, fraction: float = 0.1) -> list[tuple[slice, slice]]:
    """Top, bottom, left and right strips of ``max(1, round(fraction * side))`` pixels, as index pairs.

    Raises:
        ValueError: ``fraction`` is not in (0, 0.5].
    """
    if not 0 < fraction <= 0.5:
        raise ValueError(f"border_strips: fraction must be in (0, 0.5], got {fraction}")
    rows, cols = max(1, round(fraction * height)), max(1, round(fraction * width))
    full = slice(None)
    return [
        (slice(0, rows), full),
        (slice(height - rows, height), full),
        (full, slice(0, cols)),
        (full, slice(width - cols, width)),
    ]


def backgroundness(image: np.ndarray, fraction: float = 0.1, ridge: float = 1.0, blur_sigma: float = 1.0) -> np.ndarray:
    """The backgroundness map of an ``(H, W, 3)`` uint8 RGB image (float64, in [0, 3]).

    Args:
        image: The image.
        fraction: Width of each border strip as a fraction of the side.
        ridge: Added to the diagonal of each strip's Lab covariance (in Lab units squared), so that a flat
            strip still has an invertible covariance.
        blur_sigma: Gaussian blur before the Lab conversion, in pixels.
    """
    return backgroundness_lab(to_lab(image, blur_sigma), fraction, ridge)


def backgroundness_lab(lab: np.ndarray, fraction: float = 0.1, ridge: float = 1.0) -> np.ndarray:
    """:func:`backgroundness` of an image already in Lab, ``(H, W, 3)``."""
    lab = np.asarray(lab, dtype=np.float64)
    pixels = np.ascontiguousarray(lab.reshape(-1, 3).T)  # (3, H*W): channel-major is the fast layout here
    distances = []
    for rows, cols in border_strips(*lab.shape[:2], fraction):
        strip = lab[rows, cols].reshape(-1, 3)
        mean = strip.mean(axis=0)
        cov = np.cov(strip, rowvar=False, bias=True) + ridge * np.eye(3)
        diff = pixels - mean[:, None]
        d = np.sqrt(np.maximum(((np.linalg.inv(cov) @ diff) * diff).sum(axis=0), 0.0))
        top = d.max()
        distances.append(d / top if top > 0 else d)
    stacked = np.stack(distances)
    return (stacked.sum(axis=0) - stacked.max(axis=0)).reshape(lab.shape[:2])


@register_cue("mbplus")
def mbplus(image: np.ndarray, passes: int = DEFAULT_PASSES, blur_sigma: float = 1.0) -> np.ndarray:
    """MB+: min-max normalised MBD plus min-max normalised backgroundness (float64, in [0, 2])."""
    lab = to_lab(image, blur_sigma)
    return minmax(mbd_lab(lab, passes)) + minmax(backgroundness_lab(lab))
