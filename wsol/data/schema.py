"""The one sample schema every reader produces.

Boxes are ``x0, y0, x1, y1`` pixel coordinates with an **inclusive** end (the convention of the
reference benchmark's metadata: a one-pixel box is ``[x, y, x, y]``). Masks are label maps with 0 for
background, ``c + 1`` for class ``c`` and 255 for pixels to ignore.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255


@dataclass
class Sample:
    """One annotated image.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        labels: class indices present in the image (one entry for single-label data).
        boxes: ``(k, 4)`` float32 inclusive ``x0, y0, x1, y1`` in pixels of ``image``; ``k`` may be 0.
        image_id: identifier used in error messages, metadata and score-map file names.
        mask: optional ``(H, W)`` uint8 label map (0 background, ``c + 1`` class ``c``, 255 ignore).
    """

    image: np.ndarray
    labels: tuple[int, ...]
    boxes: np.ndarray
    image_id: str
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        validate_sample(self)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the image."""
        return self.image.shape[1], self.image.shape[0]


def validate_sample(sample: Sample) -> None:
    """Check shapes, dtypes and that every box lies inside its image.

    Raises:
        ValueError: naming the image id and what is wrong.
    """
    img, name = sample.image, sample.image_id
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"{name}: image must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
    height, width = img.shape[:2]
    boxes = np.asarray(sample.boxes, dtype=np.float32).reshape(-1, 4)
    sample.boxes = boxes
    for x0, y0, x1, y1 in boxes:
        if not (0 <= x0 <= x1 <= width - 1 and 0 <= y0 <= y1 <= height - 1):
            raise ValueError(
                f"{name}: box {[float(x0), float(y0), float(x1), float(y1)]} is inverted or outside "
                f"the {width}x{height} image (inclusive x0 <= x1 <= W-1, y0 <= y1 <= H-1)"
            )
    if not sample.labels:
        raise ValueError(f"{name}: a sample needs at least one class label")
    if min(sample.labels) < 0:
        raise ValueError(f"{name}: negative class label in {sample.labels}")
    if sample.mask is not None and sample.mask.shape != (height, width):
        raise ValueError(f"{name}: mask shape {sample.mask.shape} does not match image {height}x{width}")
