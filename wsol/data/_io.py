"""Image and label-map loading shared by the dataset readers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def read_text(path: Path) -> str:
    """A metadata or annotation file as UTF-8 text; another encoding is refused with the file named."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None


def _unreadable(path: Path, err: Exception) -> ValueError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ValueError(f"image {path} cannot be read (empty, truncated or not an image): {reason}")


def load_rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB; grayscale, palette and RGBA files are converted, 16-bit ones scaled.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, truncated or not an image (the message names it).
    """
    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit (or 32-bit integer) gray: scale the full range to 8 bits instead of saturating at 255.
                pixels = np.asarray(im).astype(np.float64)
                peak = 65535.0 if im.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
                gray = np.clip(np.round(pixels * (255.0 / peak)), 0, 255).astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise _unreadable(path, err) from None


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise _unreadable(path, err) from None


def load_label_png(path: Path) -> np.ndarray:
    """A label map as stored: palette indices for ``P`` images, the gray level otherwise (uint8).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, truncated or not an image (the message names it).
    """
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "1", "I", "I;16"):
                im = im.convert("L")
            return np.asarray(im).astype(np.uint8)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise _unreadable(path, err) from None


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
