"""Every figure ``wsol`` draws (matplotlib on the Agg backend, written atomically):

* CAM overlays with GT and predicted boxes (:func:`save_overlay_grid`);
* an evaluation's BoxAcc(τ) curves and pixel precision-recall curve (:func:`plot_box_accuracy`,
  :func:`plot_pixel_pr`), several methods' curves side by side (:func:`plot_method_curves`);
* a pseudo-mask run's image | GT | mask grid and background-threshold sweep (:func:`save_mask_grid`,
  :func:`save_sweep_plot`);
* a study's accuracy-vs-localization scatter, one panel per regime (:func:`plot_study_scatter`);
* the multi-draw study's per-draw points with the label-free baseline and the supervised ceiling
  (:func:`plot_draws`).

Importing it loads neither torch nor matplotlib; matplotlib loads with the first figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wsol.atomic import atomic_write

if TYPE_CHECKING:
    from wsol.metrics import BoxResult, MaskResult


@dataclass(frozen=True)
class ScatterPoint:
    """One row of a study: mean ± std of top-1 (x) and localization (y), plus a second y drawn hollow."""

    label: str
    x: float
    x_err: float
    y: float
    y_err: float
    y_hollow: float


@dataclass(frozen=True)
class ReferenceLine:
    """A horizontal line: a reference row's score, or a target."""

    label: str
    value: float
    style: str = "--"
    colour: str = "grey"


__all__ = [
    "ReferenceLine",
    "ScatterPoint",
    "colorize",
    "denormalize",
    "plot_box_accuracy",
    "plot_method_curves",
    "plot_pixel_pr",
    "plot_study_scatter",
    "pyplot",
    "save_figure",
    "save_mask_grid",
    "save_overlay_grid",
    "save_sweep_plot",
]


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


def plot_method_curves(path: str | Path, results: Mapping[str, BoxResult], title: str) -> Path:
    """BoxAcc(τ) of several methods (``results``: name -> result), one panel per IoU threshold (all-contour
    boxes, MaxBoxAccV2's curves)."""
    plt = pyplot()
    ious = next(iter(results.values())).iou_thresholds
    fig, axes = plt.subplots(1, len(ious), figsize=(4.2 * len(ious), 3.6), squeeze=False, sharey=True)
    for ax, iou in zip(axes[0], ious, strict=True):
        for name, result in results.items():
            mode = result.modes["MaxBoxAccV2"]
            ax.plot(result.cam_thresholds, mode.curves[iou], lw=1.4, label=f"{name} ({mode.per_iou[iou]:.1f})")
        ax.set_title(f"IoU >= {iou / 100:.1f}")
        ax.set_xlabel("CAM threshold tau")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("BoxAcc (%), all contours")
    fig.suptitle(f"BoxAcc(tau): {title}", fontsize=10)
    return save_figure(fig, path, dpi=110)


def colorize(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` label map to ``(H, W, 3)`` uint8 VOC colours (255, ignore, is cream)."""
    from wsol.data.palette import voc_palette

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


def plot_study_scatter(
    path: str | Path,
    panels: Mapping[str, Sequence[ScatterPoint]],
    lines: Sequence[ReferenceLine] = (),
    xlabel: str = "top-1 accuracy on val (%)",
    ylabel: str = "MaxBoxAccV2 on val",
    title: str = "",
) -> Path:
    """One scatter panel per key of ``panels`` (e.g. per training regime): every point with its error bars, its
    hollow second value, and the horizontal ``lines``. One colour per label across panels. The y range fits the
    points and the lines near them; a line far outside it (e.g. a reference scoring 0) is named in the legend as
    off the axis rather than drawn."""
    plt = pyplot()
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6.5 * max(1, len(panels)), 5), squeeze=False)
    names = list(dict.fromkeys(point.label for points in panels.values() for point in points))
    for ax, (panel, points) in zip(axes[0], panels.items(), strict=False):
        shown = [line.value for line in lines if line.style == "-"]  # targets always in view
        for point in points:
            colour = plt.get_cmap("tab20")(names.index(point.label) % 20)
            ax.errorbar(point.x, point.y, xerr=point.x_err, yerr=point.y_err, fmt="o", color=colour, capsize=3)
            ax.plot(point.x, point.y_hollow, "o", mfc="none", color=colour, ms=5)
            ax.annotate(point.label, (point.x, point.y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            shown += [point.y - point.y_err, point.y + point.y_err, point.y_hollow]
        shown += [line.value for line in lines if line.style != "-" and line.value > 0]
        low, high = (min(shown), max(shown)) if shown else (0.0, 100.0)
        low, high = low - 0.1 * (high - low) - 0.5, high + 0.1 * (high - low) + 0.5
        for line in lines:
            where = "" if low <= line.value <= high else ", off the axis"
            label = f"{line.label}: {line.value:.2f}{where}"
            ax.axhline(line.value, ls=line.style, color=line.colour, lw=1, label=label)
        ax.set_ylim(low, high)
        ax.set(title=panel, xlabel=xlabel, ylabel=ylabel)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=90)


# Marker shapes cycled over the colours so that rows beyond the palette's size keep a style of their own.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
# Points this far below every line of the figure are drawn on the axis' floor, their value written beside.
_FLOOR_BELOW_LINES = 15.0


def row_styles(rows: Sequence[str]) -> dict[str, tuple[tuple[float, ...], str]]:
    """A distinct ``(RGBA colour, marker)`` per row: ``tab10``'s ten colours, then the next marker shape with them
    again (70 rows before a style repeats)."""
    plt = pyplot()
    cmap = plt.get_cmap("tab10")
    return {row: (tuple(cmap(k % 10)), _MARKERS[(k // 10) % len(_MARKERS)]) for k, row in enumerate(rows)}


def plot_draws(
    path: str | Path,
    points: Mapping[str, Mapping[str, Sequence[float]]],
    baseline: Mapping[str, float],
    ceiling: Mapping[str, float],
    prior: Mapping[str, float] | None = None,
    ylabel: str = "MaxBoxAccV2 on val (τ from tune)",
    highlight: str | None = None,
    order: Sequence[str] = (),
) -> Path:
    """One column per draw: every row's per-seed scores as points (a colour and marker per row, side by side, rows
    in ``order`` and then as they first appear in ``points``), and per draw the label-free baseline (solid black),
    the supervised ceiling (dashed green) and the centre prior (dotted grey) as short horizontal lines. The
    ``highlight`` row (e.g. the best one) is drawn as large stars. The y axis fits the lines and the points near
    them: a point more than 15 points below every line is drawn on the axis' floor as a small triangle with its
    value written beside it."""
    plt = pyplot()
    draws = list(points)
    present = {row for per_draw in points.values() for row in per_draw}
    rows = list(dict.fromkeys([r for r in order if r in present] + [r for d in points.values() for r in d]))
    styles = row_styles([r for r in rows if r != highlight])
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(draws) + 2.5), 5))
    width = 0.8
    lines = [v for values in (baseline, ceiling, prior or {}) for v in values.values()]
    values = [y for per_draw in points.values() for ys in per_draw.values() for y in ys]
    floor = (min(lines) - _FLOOR_BELOW_LINES) if lines else min(values, default=0.0)
    kept = [y for y in values if y >= floor] + lines
    low, high = (min(kept), max(kept)) if kept else (0.0, 100.0)
    low, high = low - 0.05 * (high - low) - 0.5, high + 0.05 * (high - low) + 0.5
    handles: dict[str, Any] = {}  # legend entries: the lines, then the rows in their order
    for i, draw in enumerate(draws):
        for name, per_draw, style, colour in (
            ("label-free baseline", baseline, "-", "black"),
            ("supervised ceiling", ceiling, "--", "green"),
            ("centre prior", prior or {}, ":", "grey"),
        ):
            if draw in per_draw:
                line = ax.hlines(per_draw[draw], i - width / 2, i + width / 2, colors=colour, linestyles=style)
                handles.setdefault(name, line)
        for k, row in enumerate(rows):
            ys = list(points[draw].get(row, ()))
            if not ys:
                continue
            x = i - width / 2 + width * (k + 0.5) / max(1, len(rows))
            if row == highlight:
                colour, marker, size, edge = (0.0, 0.0, 0.0, 1.0), "*", 11, "black"
            else:
                (colour, marker), size, edge = styles[row], 4, "none"
            shown = [y for y in ys if y >= floor]
            (dots,) = ax.plot([x] * len(shown), shown, marker, color=colour, mec=edge, ms=size, ls="none")
            handles.setdefault(row, dots)
            for y in ys:
                if y < floor:
                    ax.plot([x], [low], "v", color=colour, ms=4, clip_on=False)
                    ax.annotate(f"{y:.0f}", (x, low), fontsize=6, xytext=(2, 3), textcoords="offset points")
    ax.set_ylim(low, high)
    ax.set_xticks(range(len(draws)), draws)
    ax.set(xlabel="class draw", ylabel=ylabel, title="per-draw scores (one point per seed)")
    entries = [n for n in ("label-free baseline", "supervised ceiling", "centre prior") if n in handles]
    entries += [r for r in rows if r in handles]
    labels = [f"{e} (best)" if e == highlight else e for e in entries]
    ax.legend([handles[e] for e in entries], labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)
