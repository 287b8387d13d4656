"""Score maps that use no model: the reference rows every CAM should beat."""

from __future__ import annotations

import numpy as np


def center_gaussian(height: int, width: int, sigma: float = 0.25) -> np.ndarray:
    """A centred Gaussian score map in [0, 1] (min-max normalised).

    Under MaxBoxAcc the threshold sweep turns it into the family of centred boxes, so the exact
    ``sigma`` (a fraction of each side) barely matters; it is the "center prior" baseline.
    """
    ys = (np.arange(height) - (height - 1) / 2) / (sigma * height)
    xs = (np.arange(width) - (width - 1) / 2) / (sigma * width)
    g = np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
    g -= g.min()
    return g / g.max()


def all_ones(height: int, width: int) -> np.ndarray:
    """A constant map. The protocol turns a constant map into all zeros, which has no contour at any τ, so
    every prediction is the reference's fallback box ``[0, 0, 0, 0]``: the floor of the metric, not a
    whole-image box."""
    return np.ones((height, width), dtype=np.float64)
