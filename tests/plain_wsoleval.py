"""A plain, per-threshold implementation of the wsolevaluation protocol (test and benchmark helper).

This mirrors the reference's loops one to one (clovaai/wsolevaluation ``evaluation.py``:
``compute_bboxes_from_scoremaps``, ``calculate_multiple_iou``, ``BoxEvaluator.accumulate`` and
``MaskEvaluator``): one ``cv2.threshold`` + ``cv2.findContours`` per threshold of the grid, per image.
It is deliberately slow and literal; it is the baseline the fast library code is checked and timed
against, and it is not part of the library.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def plain_iou(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) with the reference's inclusive (+1) areas."""
    box_a = np.asarray(box_a)[:, None, :]
    box_b = np.asarray(box_b)[None, :, :]
    min_x = np.maximum(box_a[..., 0], box_b[..., 0])
    min_y = np.maximum(box_a[..., 1], box_b[..., 1])
    max_x = np.minimum(box_a[..., 2], box_b[..., 2])
    max_y = np.minimum(box_a[..., 3], box_b[..., 3])
    inter = np.maximum(0, max_x - min_x + 1) * np.maximum(0, max_y - min_y + 1)
    area_a = (box_a[..., 2] - box_a[..., 0] + 1) * (box_a[..., 3] - box_a[..., 1] + 1)
    area_b = (box_b[..., 2] - box_b[..., 0] + 1) * (box_b[..., 3] - box_b[..., 1] + 1)
    denominator = area_a + area_b - inter
    degenerate = denominator <= 0
    denominator = np.where(degenerate, 1, denominator)
    return np.where(degenerate, 0.0, inter / denominator)


def plain_boxes(scoremap: np.ndarray, thresholds: Sequence[float], multi_contour: bool) -> list[np.ndarray]:
    """Predicted boxes at every threshold, exactly as ``compute_bboxes_from_scoremaps``."""
    height, width = scoremap.shape
    image = np.expand_dims((scoremap.astype(np.float64) * 255).astype(np.uint8), 2)
    out = []
    for threshold in thresholds:
        _, binary = cv2.threshold(image, thresh=int(threshold * np.max(image)), maxval=255, type=cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            out.append(np.asarray([[0, 0, 0, 0]]))
            continue
        if not multi_contour:
            contours = [max(contours, key=cv2.contourArea)]
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        out.append(np.asarray(boxes))
    return out


def plain_box_curves(
    scoremaps: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    interval: float,
    multi_contour: bool,
    iou_thresholds: Sequence[int] = (30, 50, 70),
    cls_correct: Sequence[bool] | None = None,
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Number of correct images per threshold and IoU: (GT-known counts, top-1 counts)."""
    thresholds = np.arange(0, 1, interval)
    correct = {iou: np.zeros(len(thresholds), np.int64) for iou in iou_thresholds}
    top1 = {iou: np.zeros(len(thresholds), np.int64) for iou in iou_thresholds}
    for i, (scoremap, gt) in enumerate(zip(scoremaps, gt_boxes, strict=True)):
        boxes = plain_boxes(scoremap, thresholds, multi_contour)
        best = np.asarray([plain_iou(b, np.asarray(gt)).max() for b in boxes])
        for iou in iou_thresholds:
            hit = best >= iou / 100
            correct[iou] += hit
            if cls_correct is not None and cls_correct[i]:
                top1[iou] += hit
    return correct, top1


def plain_pxap_histograms(
    scoremaps: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray], interval: float
) -> tuple[np.ndarray, np.ndarray]:
    """Float64 fg/bg score histograms exactly as ``MaskEvaluator.accumulate`` builds them."""
    edges = np.append(np.arange(0, 1, interval), [1.0, 2.0, 3.0])
    gt_true = np.zeros(len(edges) - 1, np.float64)
    gt_false = np.zeros(len(edges) - 1, np.float64)
    for scoremap, mask in zip(scoremaps, gt_masks, strict=True):
        scoremap = scoremap.astype(np.float64)
        gt_true += np.histogram(scoremap[mask == 1], bins=edges)[0]
        gt_false += np.histogram(scoremap[mask == 0], bins=edges)[0]
    return gt_true, gt_false


def plain_pxap(gt_true: np.ndarray, gt_false: np.ndarray) -> float:
    """PxAP from the two histograms, as ``MaskEvaluator.compute``."""
    num_gt_true = gt_true.sum()
    tp = gt_true[::-1].cumsum()
    fp = gt_false[::-1].cumsum()
    with np.errstate(invalid="ignore"):  # 0 / 0 where nothing is predicted; masked out below
        precision = tp / (tp + fp)
    recall = tp / num_gt_true
    valid = (tp + fp) > 0
    auc = (precision[1:] * np.diff(recall))[valid[1:]].sum()
    return float(auc * 100)
