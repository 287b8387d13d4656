"""Colour tables of label maps, below every room that draws or writes them (plots, pseudo-mask PNGs)."""

from __future__ import annotations

import numpy as np

__all__ = ["voc_palette"]


def voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map ``(256, 3)`` uint8: index 0 black, 1 (128, 0, 0), ..., 255 (224, 224, 192).

    Built by the devkit's bit-interleaving rule, so colours of classes beyond VOC's 20 stay distinct.
    """
    out = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        out[i] = (r, g, b)
    return out
