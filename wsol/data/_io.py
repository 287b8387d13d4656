"""Image and label-map loading shared by the dataset readers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def load_rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB; grayscale, palette and RGBA files are converted."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels."""
    with Image.open(path) as im:
        return im.size


def load_label_png(path: Path) -> np.ndarray:
    """A label map as stored: palette indices for ``P`` images, the gray level otherwise (uint8)."""
    with Image.open(path) as im:
        if im.mode not in ("P", "L", "1", "I", "I;16"):
            im = im.convert("L")
        return np.asarray(im).astype(np.uint8)


def resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a label map to ``(width, height)`` with nearest-neighbour sampling (labels are not blended)."""
    if mask.shape[1] == size[0] and mask.shape[0] == size[1]:
        return mask
    return cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)


def tight_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Inclusive bounds of the non-zero pixels of ``mask``, or None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())
