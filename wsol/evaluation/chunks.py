"""The evaluator's unit of work: a run of images of one source into fresh accumulators (which merge by addition)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wsol.evaluation.sources import Source
from wsol.metrics import BoxAccumulator, MaskAccumulator

__all__ = ["ChunkConfig", "PartialResult", "run_chunk"]


@dataclass
class ChunkConfig:
    """What every chunk computes.

    Attributes:
        boxes: Box metrics (MaxBoxAcc, MaxBoxAccV2, Top-1 Loc).
        masks: Mask metrics (PxAP, PIoU).
        cam_curve_interval: Δ of the threshold grid.
        iou_thresholds: IoU thresholds in percent.
        box_modes: ``"MaxBoxAcc"`` and/or ``"MaxBoxAccV2"``.
    """

    boxes: bool
    masks: bool
    cam_curve_interval: float
    iou_thresholds: tuple[int, ...]
    box_modes: tuple[str, ...]


@dataclass
class PartialResult:
    """The accumulators of one chunk and its degenerate maps as ``(index, image_id)``."""

    boxes: BoxAccumulator | None
    masks: MaskAccumulator | None
    degenerate: list[tuple[int, str]]


def run_chunk(
    source: Source, indices: Sequence[int], config: ChunkConfig, on_image: Callable[[int], object] | None = None
) -> PartialResult:
    """Score the images ``indices`` of ``source`` into new accumulators (``on_image(1)`` after each image).

    Raises:
        ValueError: for bad settings, or bad input naming the image and the ground-truth file.
    """
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
    return PartialResult(boxes, masks, degenerate)
