"""Running CAM methods over a dataset under the evaluation protocol (shared by ``wsol cams``/``leaderboard``).

Protocol (docs/protocol.md §1): images squashed to ``size x size`` (PIL bilinear as the
reference's torchvision ``Resize``, or OpenCV), the map of the GT class (GT-known), float64 bicubic
upsampling to ``size x size`` and per-image min-max (:func:`wsol.metrics.prepare_scoremaps`); the last step
may be another normalisation of :data:`wsol.metrics.NORMALIZATIONS` (Kim et al., ICCV 2021).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from wsol.atomic import write_text
from wsol.cams.base import CAMMethod
from wsol.cams.models import CAMModel, class_mapping
from wsol.data import EvalTransform, SampleDataset, collate, read_dataset
from wsol.metrics import DEFAULT_PERCENTILE


@dataclass(frozen=True)
class DataSpec:
    """A dataset to run on: reader name, root (``None``: the reader's default), split and reader options."""

    reader: str
    root: str | None = None
    split: str = "val"
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        return self.reader if self.root is None else f"{self.reader}:{Path(self.root).name}"

    def open(self) -> SampleDataset:
        return read_dataset(self.reader, self.root, self.split, **dict(self.options))


class _WithOriginals:
    """The protocol transform plus what the metadata needs in original pixels (boxes, mask)."""

    def __init__(self, transform: EvalTransform) -> None:
        self.transform = transform

    def __call__(self, sample: Any) -> dict[str, Any]:
        out = self.transform(sample)
        out["orig_boxes"] = np.asarray(sample.boxes, dtype=np.float64).reshape(-1, 4)
        out["orig_mask"] = sample.mask
        return out


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch = collate(items)
    batch["orig_boxes"] = [it["orig_boxes"] for it in items]
    batch["orig_mask"] = [it["orig_mask"] for it in items]
    return batch


def protocol_loader(
    dataset: SampleDataset,
    model: CAMModel,
    image_size: int = 224,
    resize: Literal["pil", "cv2"] = "pil",
    batch_size: int = 32,
    limit: int | None = None,
) -> DataLoader:
    """Batches of squashed, normalised images with GT boxes in score-map pixels (and originals).

    Raises:
        ValueError: for multi-label data (the protocol scores one GT class per image).
    """
    if dataset.multilabel:
        raise ValueError("CAM scoring follows the single-label protocol (one GT class per image); got multi-label data")
    dataset.transform = _WithOriginals(EvalTransform(image_size, dataset.num_classes, resize, model.mean, model.std))
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_collate)


@dataclass
class ScoredBatch:
    """One batch's protocol score maps and what scoring them needs."""

    batch: dict[str, Any]
    scoremaps: np.ndarray  # (B, S, S) float64 in [0, 1]
    correct: np.ndarray  # (B,) top-1 prediction == GT class
    predicted: np.ndarray  # (B,) top-1 class index of the model
    seconds: float  # the method's time for the batch (maps + protocol upsampling)


def score_batch(
    method: CAMMethod,
    batch: dict[str, Any],
    class_map: torch.Tensor,
    image_size: int,
    targets: Literal["gt", "top1"] = "gt",
    normalization: str = "minmax",
    percentile: float = DEFAULT_PERCENTILE,
) -> ScoredBatch:
    """The GT class's (or the top-1 class's) map of every image of ``batch`` as a protocol score map.

    ``normalization`` (a rule of :data:`wsol.metrics.NORMALIZATIONS`, ``"minmax"``, the protocol's, by default) and
    ``percentile`` (IVR's) choose how the upsampled map becomes a score map (see
    :func:`wsol.metrics.normalize_scoremaps`).
    """
    from wsol.metrics import prepare_scoremaps

    labels = class_map[batch["label"]]
    start = time.perf_counter()
    result = method(batch["image"], labels if targets == "gt" else None)
    scoremaps = (
        prepare_scoremaps(result.maps, (image_size, image_size), normalization=normalization, percentile=percentile)
        .cpu()
        .numpy()
    )
    seconds = time.perf_counter() - start
    predicted = result.logits.argmax(dim=1).cpu()
    return ScoredBatch(batch, scoremaps, (predicted == labels).numpy(), predicted.numpy(), seconds)


def score_batches(
    method: CAMMethod,
    loader: DataLoader,
    class_map: torch.Tensor,
    image_size: int,
    targets: Literal["gt", "top1"] = "gt",
    normalization: str = "minmax",
    percentile: float = DEFAULT_PERCENTILE,
) -> Iterator[ScoredBatch]:
    """:func:`score_batch` over every batch of ``loader``."""
    for batch in loader:
        yield score_batch(method, batch, class_map, image_size, targets, normalization, percentile)


def dataset_class_map(dataset: SampleDataset, model: CAMModel) -> torch.Tensor:
    """Model class index of each dataset class (see :func:`wsol.cams.models.class_mapping`)."""
    return class_mapping(dataset, model.num_classes)


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (NumPy scalars and arrays converted)."""

    def default(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        raise TypeError(f"cannot serialise {type(value).__name__}")

    return write_text(Path(path), json.dumps(payload, indent=2, default=default))
