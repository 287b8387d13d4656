"""Figures of an evaluation: BoxAcc(τ) curves and the pixel precision-recall curve (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsol.metrics import BoxResult, MaskResult
from wsol.viz import pyplot, save_figure

__all__ = ["plot_box_accuracy", "plot_pixel_pr"]


def _figure(ncols: int):
    plt = pyplot()
    return plt, *plt.subplots(1, ncols, figsize=(5.5 * ncols, 4.2), squeeze=False)


def plot_box_accuracy(result: BoxResult, path: str | Path) -> Path:
    """BoxAcc(τ) per IoU threshold, one panel per box mode, the optimal τ of each curve marked."""
    plt, fig, axes = _figure(len(result.modes))
    for ax, (name, mode) in zip(axes[0], result.modes.items(), strict=True):
        for iou, curve in mode.curves.items():
            (line,) = ax.plot(result.cam_thresholds, curve, label=f"IoU {iou}: {mode.per_iou[iou]:.2f}")
            ax.axvline(mode.best_cam_threshold[iou], color=line.get_color(), lw=0.8, ls=":")
        ax.set(xlabel="CAM threshold τ", ylabel="BoxAcc (%)", xlim=(0, 1), ylim=(0, 100))
        ax.set_title(f"{name} = {mode.value:.2f}  (Δ = {result.cam_curve_interval:g}, n = {result.n_images})")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    return save_figure(fig, path, dpi=120)


def plot_pixel_pr(result: MaskResult, path: str | Path) -> Path:
    """Pixel precision-recall curve with PxAP (the area under the step curve) and the MaxPIoU point."""
    plt, fig, axes = _figure(1)
    ax = axes[0, 0]
    curves = result.curves
    valid = (curves.tp + curves.fp) > 0
    ax.step(curves.recall[valid], curves.precision[valid], where="post", label=f"PxAP = {result.pxap:.2f}")
    best = int(np.nanargmax(np.nan_to_num(curves.iou, nan=-1.0)))
    ax.plot(
        curves.recall[best],
        curves.precision[best],
        "o",
        label=f"MaxPIoU = {result.piou:.2f} at {result.piou_threshold:g}",
    )
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(f"Pixel precision-recall (n = {result.n_images})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return save_figure(fig, path, dpi=120)
