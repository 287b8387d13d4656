"""Evaluation metrics for WSOL (box and mask) and WSSS (segmentation), reproducing the reference numbers.

Pure functions and streaming accumulators (no file I/O, no printing); the semantics follow
docs/protocol.md (clovaai/wsolevaluation), and every extension (Top-1 Loc,
MaxPIoU, the WSSS metrics) is labelled as such.
"""

from wsol.metrics._histogram import warm_up as _warm_up_histogram
from wsol.metrics._select import warm_up as _warm_up_select
from wsol.metrics._sweep import warm_up as _warm_up_sweep
from wsol.metrics.accumulators import (
    BoxAccumulator,
    BoxModeResult,
    BoxResult,
    MaskAccumulator,
    MaskResult,
    Top1Result,
)
from wsol.metrics.boxes import (
    best_box_ious,
    box_iou_inclusive,
    boxes_from_scoremap,
    check_boxes,
    integer_thresholds,
    resize_gt_boxes,
)
from wsol.metrics.masks import (
    PixelCurves,
    pixel_curves,
    pxap_bin_edges,
    pxap_bin_index,
    pxap_from_curves,
    pxap_from_histograms,
    score_histograms,
)
from wsol.metrics.normalization import (
    DEFAULT_NORMALIZATION,
    DEFAULT_PERCENTILE,
    NORMALIZATIONS,
    NormalizationRule,
    check_normalization,
    get_normalization,
    normalization_rules,
    normalize_scoremaps,
    normalize_scoremaps_torch,
    register_normalization,
)
from wsol.metrics.scoremaps import (
    cam_thresholds,
    check_scoremaps,
    prepare_scoremaps,
    prepare_scoremaps_numpy,
    quantize_scoremap,
    upsample_cam_numpy,
)
from wsol.metrics.segmentation import (
    BackgroundThresholdSweep,
    ConfusionMatrix,
    SegmentationResult,
    confusion_matrix,
    labels_from_scores,
    segmentation_scores,
)

__all__ = [
    "DEFAULT_NORMALIZATION",
    "DEFAULT_PERCENTILE",
    "NORMALIZATIONS",
    "NormalizationRule",
    "BackgroundThresholdSweep",
    "BoxAccumulator",
    "BoxLocalizationMetric",
    "BoxModeResult",
    "BoxResult",
    "MaskAccumulator",
    "MaskResult",
    "ConfusionMatrix",
    "PixelCurves",
    "PxAPMetric",
    "SegmentationMetric",
    "SegmentationResult",
    "Top1Result",
    "best_box_ious",
    "box_iou_inclusive",
    "boxes_from_scoremap",
    "cam_thresholds",
    "check_boxes",
    "check_normalization",
    "get_normalization",
    "normalization_rules",
    "check_scoremaps",
    "confusion_matrix",
    "integer_thresholds",
    "labels_from_scores",
    "normalize_scoremaps",
    "normalize_scoremaps_torch",
    "pixel_curves",
    "prepare_scoremaps",
    "prepare_scoremaps_numpy",
    "upsample_cam_numpy",
    "pxap_bin_edges",
    "pxap_bin_index",
    "pxap_from_curves",
    "pxap_from_histograms",
    "quantize_scoremap",
    "register_normalization",
    "resize_gt_boxes",
    "score_histograms",
    "segmentation_scores",
    "warm_up_kernels",
]


def warm_up_kernels() -> None:
    """Compile the evaluators' numba kernels now (or load them from numba's on-disk cache).

    They compile on first use anyway; calling this first keeps the compilation out of a timing, and
    before forking worker processes it lets every worker inherit the compiled code.
    """
    _warm_up_sweep()
    _warm_up_histogram()
    _warm_up_select()


_TORCHMETRICS = ("BoxLocalizationMetric", "PxAPMetric", "SegmentationMetric")


def __getattr__(name: str) -> object:
    # The torchmetrics wrappers need torch; the numpy metrics above do not, so they load on first use.
    if name in _TORCHMETRICS:
        from wsol.metrics import torchmetrics_wrappers

        return getattr(torchmetrics_wrappers, name)
    raise AttributeError(f"module 'wsol.metrics' has no attribute {name!r}")
