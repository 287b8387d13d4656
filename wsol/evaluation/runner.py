"""Evaluate a whole source, in one process or in parallel over images (:mod:`wsol.evaluation.pool`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from wsol.evaluation.chunks import ChunkConfig, PartialResult, run_chunk
from wsol.evaluation.pool import run_in_pool
from wsol.evaluation.sources import Source
from wsol.metrics import BoxResult, MaskResult

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
    config = _chunk_config(source, metrics, cam_curve_interval, iou_thresholds, box_modes)
    # Fail on bad settings before any work is spread out.
    run_chunk(source, [], config)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(source), desc="wsol evaluate", unit="img", disable=not progress)
    # Closed on the way out of an error too, so the error line starts on its own line after the bar.
    try:
        if workers <= 1:
            parts = [run_chunk(source, range(len(source)), config, bar.update)]
        else:
            parts = run_in_pool(source, config, workers, bar.update)
    finally:
        bar.close()
    return _result(source, _merge(parts))


def _chunk_config(
    source: Source,
    metrics: Sequence[str] | None,
    cam_curve_interval: float,
    iou_thresholds: Sequence[int],
    box_modes: Sequence[str],
) -> ChunkConfig:
    """What to compute: the requested metrics (default: all the source has annotations for), checked."""
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
    return ChunkConfig(
        "boxes" in metrics, "masks" in metrics, cam_curve_interval, tuple(iou_thresholds), tuple(box_modes)
    )


def _merge(parts: Sequence[PartialResult]) -> PartialResult:
    """One result of every chunk's (accumulators merge by addition, so chunking changes nothing)."""
    total = PartialResult(None, None, [])
    for part in parts:
        total.degenerate += part.degenerate
        if part.boxes is not None:
            total.boxes = part.boxes if total.boxes is None else total.boxes.merge(part.boxes)
        if part.masks is not None:
            total.masks = part.masks if total.masks is None else total.masks.merge(part.masks)
    return total


def _result(source: Source, total: PartialResult) -> EvaluationResult:
    from wsol.metrics.normalization import get_normalization

    normalization = {"method": None, "percentile": None}
    if source.normalization is not None:
        normalization = get_normalization(source.normalization, source.percentile).record(source.percentile)
    return EvaluationResult(
        boxes=total.boxes.compute() if total.boxes is not None else None,
        masks=total.masks.compute() if total.masks is not None else None,
        degenerate=[image_id for _, image_id in sorted(total.degenerate)],
        source=source.describe(),
        normalization=normalization,
    )
