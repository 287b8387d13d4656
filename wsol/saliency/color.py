"""Colour conversion shared by the cues: lightly blurred CIE Lab, and per-map min-max normalisation."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["minmax", "to_lab"]


def to_lab(image: np.ndarray, blur_sigma: float = 1.0) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W, 3)`` float32 Lab (L in [0, 100]), Gaussian-blurred by ``blur_sigma`` px.

    A ``blur_sigma`` of 0 skips the blur.
    """
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    if blur_sigma > 0:
        lab = cv2.GaussianBlur(lab, (0, 0), blur_sigma, borderType=cv2.BORDER_REFLECT)
    return lab


def minmax(maps: np.ndarray) -> np.ndarray:
    """Min-max normalise one ``(H, W)`` map or each of ``(N, H, W)`` maps to [0, 1] (float64).

    A constant map, or one with NaN or inf, becomes all zeros (as the protocol treats score maps).
    """
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(-1, maps.shape[-2] * maps.shape[-1])
    out = np.zeros_like(flat)
    finite = np.isfinite(flat).all(axis=1)
    safe = np.where(np.isfinite(flat), flat, 0.0)
    lo, hi = safe.min(axis=1), safe.max(axis=1)
    ok = finite & (hi > lo)
    out[ok] = (flat[ok] - lo[ok, None]) / (hi[ok] - lo[ok])[:, None]
    return out.reshape(maps.shape)
