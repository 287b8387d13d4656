"""Pictures: CAM overlays with GT and predicted boxes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsol.atomic import atomic_write


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (works headless, in workers and in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi))
    pyplot().close(fig)
    return path


def denormalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(B, 3, H, W)`` normalised floats back to ``(B, H, W, 3)`` uint8."""
    x = images.transpose(0, 2, 3, 1) * np.asarray(std) + np.asarray(mean)
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def save_overlay_grid(
    path: str | Path,
    images: np.ndarray,
    scoremaps: np.ndarray,
    gt_boxes: Sequence[np.ndarray],
    pred_boxes: Sequence[np.ndarray] | None = None,
    captions: Sequence[str] | None = None,
    ncols: int = 4,
    title: str | None = None,
) -> Path:
    """Save a grid of images with their score maps as heat maps, GT boxes (green) and predictions (red).

    Args:
        path: output image file (PNG).
        images: ``(N, H, W, 3)`` uint8.
        scoremaps: ``(N, H, W)`` in [0, 1].
        gt_boxes: per image, ``(k, 4)`` inclusive boxes in image pixels.
        pred_boxes: per image, ``(m, 4)`` inclusive predicted boxes, or None.
        captions: one short caption per image.
        ncols: grid columns.
        title: figure title.
    """
    from matplotlib.patches import Rectangle

    plt = pyplot()

    n = len(images)
    if n == 0:
        raise ValueError("no images to plot")
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.8 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        ax.imshow(images[i])
        ax.imshow(scoremaps[i], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        for boxes, colour in ((gt_boxes[i], "lime"), (None if pred_boxes is None else pred_boxes[i], "red")):
            for x0, y0, x1, y1 in [] if boxes is None else np.asarray(boxes).reshape(-1, 4):
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, lw=1.5, ec=colour))
        if captions is not None:
            ax.set_title(captions[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=110)
