"""Pictures of a pseudo-mask run: image | GT | pseudo-mask grid, and the background-threshold sweep."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsol.viz import pyplot, save_figure
from wsol.wsss.export import voc_palette


def colorize(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` label map to ``(H, W, 3)`` uint8 VOC colours (255, ignore, is cream)."""
    return voc_palette()[np.asarray(labels, dtype=np.uint8)]


def save_mask_grid(
    path: str | Path,
    images: Sequence[np.ndarray],
    gt_masks: Sequence[np.ndarray | None],
    pred_masks: Sequence[np.ndarray],
    captions: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Save one row per image: the image, its GT mask (blank when absent) and its pseudo-mask.

    Args:
        path: output PNG.
        images: ``(H, W, 3)`` uint8 images, each at its own size.
        gt_masks: ``(H, W)`` label maps or None.
        pred_masks: ``(H, W)`` pseudo-masks.
        captions: one caption per row (e.g. the image id).
        title: figure title.
    """
    n = len(images)
    if n == 0 or not (len(gt_masks) == len(pred_masks) == n):
        raise ValueError(
            f"need equally many images, GT masks and pseudo-masks (> 0), got {n}, {len(gt_masks)}, {len(pred_masks)}"
        )
    plt = pyplot()
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
    for i in range(n):
        row = axes[i]
        row[0].imshow(images[i])
        if gt_masks[i] is not None:
            row[1].imshow(colorize(gt_masks[i]), interpolation="nearest")
        row[2].imshow(colorize(pred_masks[i]), interpolation="nearest")
        for ax, name in zip(row, ("image", "GT", "pseudo-mask"), strict=True):
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
        if captions is not None:
            row[0].set_ylabel(captions[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=100)


def save_sweep_plot(path: str | Path, sweep: dict[str, Any]) -> Path:
    """Plot mIoU against the background threshold, marking the best (``sweep`` from the scorer)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(sweep["thresholds"], sweep["mIoU"], marker=".", lw=1.2)
    best_t, best = sweep["best_threshold"], sweep["best_mIoU"]
    ax.axvline(best_t, color="red", lw=0.8, ls="--")
    ax.annotate(
        f"best t={best_t:.2f}\nmIoU {best:.1f}", (best_t, best), fontsize=8, xytext=(5, -25), textcoords="offset points"
    )
    ax.set_xlabel("background threshold")
    ax.set_ylabel("mIoU (%)")
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=110)
