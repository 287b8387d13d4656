"""Evaluate a whole source, in one process or in parallel over images (accumulators merge by addition)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import cv2

from wsol.evaluation.sources import Source
from wsol.metrics import BoxAccumulator, BoxResult, MaskAccumulator, MaskResult, warm_up_kernels

__all__ = ["EvaluationResult", "evaluate"]


@dataclass
class EvaluationResult:
    """Box and/or mask results of one evaluation.

    Attributes:
        boxes: MaxBoxAcc / MaxBoxAccV2 (and Top-1 Loc) or None.
        masks: PxAP / PIoU or None.
        degenerate: Ids of constant or all-NaN maps (with a normalisation: of raw maps with NaN or ±inf, or
            that the rule leaves all zero), evaluated as all-zero maps (docs/protocol.md §1.4).
        source: Where the inputs came from.
        normalization: ``{"method", "percentile"}``: the rule that turned raw maps into score maps (``method``
            None when the maps were score maps already; ``percentile`` set for ``ivr`` only).
    """

    boxes: BoxResult | None
    masks: MaskResult | None
    degenerate: list[str] = field(default_factory=list)
    source: dict = field(default_factory=dict)
    normalization: dict = field(default_factory=lambda: {"method": None, "percentile": None})

    def to_dict(self) -> dict:
        """One JSON-ready dict; ``curves`` holds the box curves and ``PxAP_hist`` as in the reference files."""
        out: dict = {"source": self.source, "normalization": self.normalization}
        curves: dict = {}
        for part in (self.boxes, self.masks):
            if part is None:
                continue
            data = part.to_dict()
            curves.update(data.pop("curves"))
            out.update(data)
        out["curves"] = curves
        out["degenerate_scoremaps"] = {"count": len(self.degenerate), "image_ids": self.degenerate}
        return out


@dataclass
class _Config:
    boxes: bool
    masks: bool
    cam_curve_interval: float
    iou_thresholds: tuple[int, ...]
    box_modes: tuple[str, ...]


@dataclass
class _Partial:
    boxes: BoxAccumulator | None
    masks: MaskAccumulator | None
    degenerate: list[tuple[int, str]]


def _run_chunk(
    source: Source, indices: Sequence[int], config: _Config, on_image: Callable[[int], object] | None = None
) -> _Partial:
    boxes = BoxAccumulator(config.cam_curve_interval, config.iou_thresholds, config.box_modes) if config.boxes else None
    masks = MaskAccumulator(config.cam_curve_interval) if config.masks else None
    degenerate = []
    for index in indices:
        item = source.load(index, boxes=config.boxes, masks=config.masks)
        if item.degenerate:
            degenerate.append((index, item.image_id))
        scoremap = item.scoremap[None]
        if boxes is not None:
            correct = None if item.cls_correct is None else [item.cls_correct]
            try:
                boxes.update(scoremap, [item.boxes], correct)
            except ValueError as err:
                raise ValueError(f"{source.gt_where('boxes')}: image {item.image_id!r}: {err}") from err
        if masks is not None:
            try:
                masks.update(scoremap, item.mask[None])
            except ValueError as err:
                raise ValueError(f"{source.gt_where('masks')}: image {item.image_id!r}: {err}") from err
        if on_image is not None:
            on_image(1)
    return _Partial(boxes, masks, degenerate)


# Set once per worker process by _init_worker, so tasks carry only image indices.
_WORKER: tuple[Source, _Config] | None = None


def _init_worker(source: Source, config: _Config) -> None:
    global _WORKER
    _WORKER = (source, config)
    # The parallelism is over images, so OpenCV runs single-threaded. Forked workers inherit 1 from the
    # parent and must not touch the inherited pool (reconfiguring it deadlocks); spawned ones set it.
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


def _run_worker_chunk(indices: Sequence[int]) -> _Partial:
    assert _WORKER is not None
    return _run_chunk(_WORKER[0], indices, _WORKER[1])


def evaluate(
    source: Source,
    metrics: Sequence[str] | None = None,
    cam_curve_interval: float = 0.001,
    iou_thresholds: Sequence[int] = (30, 50, 70),
    box_modes: Sequence[str] = ("MaxBoxAcc", "MaxBoxAccV2"),
    workers: int = 1,
    progress: bool = False,
) -> EvaluationResult:
    """Evaluate every image of ``source``.

    Args:
        source: A :class:`~wsol.evaluation.sources.Source` (its ``normalization`` says whether its maps are raw).
        metrics: ``"boxes"`` and/or ``"masks"``; default: whatever the source has annotations for.
        cam_curve_interval: Δ of the threshold grid (0.001 for the papers' numbers, 0.01 for the
            reference's command line).
        iou_thresholds: IoU thresholds in percent.
        box_modes: ``"MaxBoxAcc"`` (v1) and/or ``"MaxBoxAccV2"``.
        workers: Processes to spread the images over (results are identical for any number).
        progress: Show a tqdm progress bar.

    Raises:
        ValueError: A requested metric has no annotations, or bad input (naming the image and file).
    """
    if metrics is None:
        metrics = [name for name, has in (("boxes", source.has_boxes), ("masks", source.has_masks)) if has]
    unknown = set(metrics) - {"boxes", "masks"}
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from boxes, masks")
    if "boxes" in metrics and not source.has_boxes:
        raise ValueError("box metrics requested, but the source has no GT boxes")
    if "masks" in metrics and not source.has_masks:
        raise ValueError("mask metrics requested, but the source has no GT masks")
    if not metrics:
        raise ValueError("the source has neither GT boxes nor GT masks")
    if len(source) == 0:
        raise ValueError("the source lists no image")
    config = _Config(
        "boxes" in metrics, "masks" in metrics, cam_curve_interval, tuple(iou_thresholds), tuple(box_modes)
    )
    # Fail on bad settings before any work is spread out.
    _run_chunk(source, [], config)

    from tqdm.auto import tqdm

    n = len(source)
    bar = tqdm(total=n, desc="wsol evaluate", unit="img", disable=not progress)
    # Closed on the way out of an error too, so the error line starts on its own line after the bar.
    try:
        parts: list[_Partial] = []
        if workers <= 1:
            parts.append(_run_chunk(source, range(n), config, bar.update))
        else:
            size = max(1, min(32, -(-n // (workers * 8))))
            chunks = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
            # fork starts workers instantly and shares the parent's imports and data (elsewhere: the default
            # start method). OpenCV's thread count is set to 1 in the parent before the fork: a forked child
            # that reconfigured the pool it inherited (whose threads did not survive the fork) would deadlock.
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() and os.name == "posix" else None
            context = multiprocessing.get_context(method)
            if method == "fork":
                source.preload()
                # Compiled once here (or loaded from numba's cache), the kernels are inherited by every worker.
                warm_up_kernels()
            cv2_threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                with ProcessPoolExecutor(
                    max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(source, config)
                ) as pool:
                    futures = {pool.submit(_run_worker_chunk, chunk): len(chunk) for chunk in chunks}
                    for future in as_completed(futures):
                        parts.append(future.result())
                        bar.update(futures[future])
            finally:
                cv2.setNumThreads(cv2_threads)
    finally:
        bar.close()

    boxes = masks = None
    degenerate: list[tuple[int, str]] = []
    for part in parts:
        degenerate += part.degenerate
        if part.boxes is not None:
            boxes = part.boxes if boxes is None else boxes.merge(part.boxes)
        if part.masks is not None:
            masks = part.masks if masks is None else masks.merge(part.masks)
    return EvaluationResult(
        boxes=boxes.compute() if boxes is not None else None,
        masks=masks.compute() if masks is not None else None,
        degenerate=[image_id for _, image_id in sorted(degenerate)],
        source=source.describe(),
        normalization={
            "method": source.normalization,
            "percentile": source.percentile if source.normalization == "ivr" else None,
        },
    )
