"""Minimum barrier distance (MBD) saliency by FastMBD raster scans (Zhang et al., ICCV 2015), compiled by numba.

The barrier of a path is the highest minus the lowest intensity along it; a pixel's MBD is the smallest barrier
of any path from it to the image border. FastMBD approximates it by alternating raster scans: a forward scan
relaxes each pixel from its up and left neighbours, a backward scan from its down and right ones, every pixel
keeping the highest and lowest value of its best path so far. Border pixels are the seeds (distance 0).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from wsol.saliency.color import to_lab
from wsol.saliency.registry import register_cue

__all__ = ["DEFAULT_PASSES", "mbd", "mbd_channel", "mbd_lab"]

DEFAULT_PASSES = 3


@njit(cache=True, nogil=True)
def _fast_mbd(img: np.ndarray, passes: int) -> np.ndarray:
    h, w = img.shape
    dist = np.full((h, w), np.inf)
    hi = img.copy()  # highest value on each pixel's best path so far
    lo = img.copy()  # lowest value on it
    dist[0, :] = 0.0
    dist[h - 1, :] = 0.0
    dist[:, 0] = 0.0
    dist[:, w - 1] = 0.0
    for p in range(passes):
        step = 1 if p % 2 == 0 else -1  # forward: from up and left; backward: from down and right
        for yi in range(1, h - 1):
            y = yi if step == 1 else h - 1 - yi
            for xi in range(1, w - 1):
                x = xi if step == 1 else w - 1 - xi
                value = img[y, x]
                for k in range(2):
                    ny = y - step if k == 0 else y
                    nx = x if k == 0 else x - step
                    top = hi[ny, nx] if hi[ny, nx] > value else value
                    bottom = lo[ny, nx] if lo[ny, nx] < value else value
                    if top - bottom < dist[y, x]:
                        dist[y, x] = top - bottom
                        hi[y, x] = top
                        lo[y, x] = bottom
    return dist


def mbd_channel(channel: np.ndarray, passes: int = DEFAULT_PASSES) -> np.ndarray:
    """FastMBD of one ``(H, W)`` channel: ``passes`` alternating raster scans (forward first), float64.

    Raises:
        ValueError: ``channel`` is not 2-D, or ``passes`` is below 1.
    """
    channel = np.asarray(channel, dtype=np.float64)
    if channel.ndim != 2:
        raise ValueError(f"mbd_channel: channel must be (H, W), got shape {channel.shape}")
    if passes < 1:
        raise ValueError(f"mbd_channel: passes must be >= 1, got {passes}")
    if min(channel.shape) < 3:
        return np.zeros(channel.shape)  # every pixel lies on the border
    return _fast_mbd(np.ascontiguousarray(channel), int(passes))


@register_cue("mbd")
def mbd(image: np.ndarray, passes: int = DEFAULT_PASSES, blur_sigma: float = 1.0) -> np.ndarray:
    """MBD saliency of an ``(H, W, 3)`` uint8 RGB image: FastMBD of each blurred Lab channel, summed (float64)."""
    return mbd_lab(to_lab(image, blur_sigma), passes)


def mbd_lab(lab: np.ndarray, passes: int = DEFAULT_PASSES) -> np.ndarray:
    """MBD saliency of an image already in Lab, ``(H, W, 3)``: the sum of its channels' FastMBD (float64)."""
    return sum((mbd_channel(lab[..., c], passes) for c in range(lab.shape[-1])), np.zeros(lab.shape[:2]))
