"""Run a trained model over a loader and score its GT-class CAMs with the reference protocol."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from wsol.methods.base import WSOLModule
from wsol.metrics import DEFAULT_PERCENTILE


@dataclass
class LocalizationRun:
    """What :func:`evaluate_localization` measured.

    Attributes:
        boxes: the box metrics (``wsol.metrics.BoxResult``).
        top1_acc: top-1 classification accuracy in percent.
        num_images: images evaluated.
        seconds: wall time of the pass (inference + scoring).
        examples: the first images, their score maps, GT boxes, labels and predictions (for pictures).
    """

    boxes: Any
    top1_acc: float
    num_images: int
    seconds: float
    examples: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def evaluate_localization(
    model: WSOLModule,
    loader: DataLoader,
    cam_curve_interval: float = 0.001,
    keep_examples: int = 16,
    progress: bool = True,
    normalization: str = "minmax",
    percentile: float = DEFAULT_PERCENTILE,
) -> LocalizationRun:
    """GT-known localization of ``model`` over a single-label loader with boxes.

    CAMs of the GT class are upsampled to the input size and normalised per map (min-max by default, as in
    docs/protocol.md §1), then streamed into a :class:`wsol.metrics.BoxAccumulator`; the top-1 prediction gives
    Top-1 Loc.

    Args:
        model: the trained model.
        loader: single-label batches with ``image``, ``label`` and ``boxes``.
        cam_curve_interval: threshold step of the box metrics.
        keep_examples: how many first images (with their score maps) to keep for pictures.
        progress: show a progress bar.
        normalization: a rule of :data:`wsol.metrics.NORMALIZATIONS`, ``"minmax"`` (the protocol's) by default
            (see :func:`wsol.metrics.normalize_scoremaps`).
        percentile: IVR's percentile in [0, 1).

    Raises:
        ValueError: for multi-label batches, an empty loader, or a bad normalisation or percentile.
    """
    from wsol.metrics import BoxAccumulator, check_normalization, prepare_scoremaps

    check_normalization(normalization, percentile)
    model.eval()
    acc = BoxAccumulator(cam_curve_interval=cam_curve_interval)
    correct_total, seen = 0, 0
    examples: dict[str, list] = {"images": [], "scoremaps": [], "gt_boxes": [], "labels": [], "preds": []}
    start = time.perf_counter()
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        if "label" not in batch:
            raise ValueError("box localization needs single-label data (a 'label' per image)")
        images = batch["image"].to(model.device)
        labels = batch["label"].to(model.device)
        logits, maps = model.forward_with_cams(images)
        preds = logits.argmax(dim=1)
        gt_maps = maps[torch.arange(len(labels), device=maps.device), labels]
        scoremaps = (
            prepare_scoremaps(gt_maps, tuple(images.shape[-2:]), normalization=normalization, percentile=percentile)
            .cpu()
            .numpy()
        )
        correct = (preds == labels).cpu().numpy()
        boxes = [b.numpy() for b in batch["boxes"]]
        acc.update(scoremaps, boxes, correct)
        correct_total += int(correct.sum())
        seen += len(labels)
        room = keep_examples - len(examples["images"])
        if room > 0:
            examples["images"].extend(batch["image"][:room].numpy())
            examples["scoremaps"].extend(scoremaps[:room])
            examples["gt_boxes"].extend(boxes[:room])
            examples["labels"].extend(labels[:room].tolist())
            examples["preds"].extend(preds[:room].tolist())
    if seen == 0:
        raise ValueError("the loader yielded no images")
    result = acc.compute()
    return LocalizationRun(
        boxes=result,
        top1_acc=100.0 * correct_total / seen,
        num_images=seen,
        seconds=time.perf_counter() - start,
        examples={k: (np.stack(v) if k in ("images", "scoremaps") else v) for k, v in examples.items()},
    )
