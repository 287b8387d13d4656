"""Weakly supervised semantic segmentation: pseudo-masks from CAMs, exported as PNG and COCO RLE, scored by mIoU."""

from wsol.wsss.export import load_label_png, rle_decode, rle_encode, save_label_png, voc_palette, write_coco_json
from wsol.wsss.inference import (
    SEAM_BG_THRESHOLD,
    SEAM_SCALES,
    cam_function,
    label_map,
    multiscale_cams,
    present_classes,
)
from wsol.wsss.pipeline import PseudoMaskConfig, PseudoMaskRun, generate_pseudo_masks
from wsol.wsss.scoring import MaskScorer, ThresholdSweep
from wsol.wsss.store import image_stem

__all__ = [
    "SEAM_BG_THRESHOLD",
    "SEAM_SCALES",
    "MaskScorer",
    "PseudoMaskConfig",
    "PseudoMaskRun",
    "ThresholdSweep",
    "cam_function",
    "generate_pseudo_masks",
    "image_stem",
    "label_map",
    "load_label_png",
    "multiscale_cams",
    "present_classes",
    "rle_decode",
    "rle_encode",
    "save_label_png",
    "voc_palette",
    "write_coco_json",
]
