"""Scoring for the study: MaxBoxAccV2 as the reference defines it, and the fair number with τ from tuning.

MaxBoxAccV2 maximises BoxAcc over the CAM threshold τ on the split being evaluated, so reporting it on
val tunes τ on val. The study reports both: the reference's number on val (τ re-optimised on val) and
the fair one, BoxAcc on val at the τ (per IoU) that maximised BoxAcc on the tuning split. Both come from
the full BoxAcc(τ) curves of :class:`wsol.metrics.BoxAccumulator`, one per split.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from wsol.atomic import atomic_write, write_text

__all__ = [
    "NORM_VARIANTS",
    "TTA_SCALES",
    "TTA_SPLITS",
    "read_maps",
    "RawMaps",
    "SplitCurves",
    "collect_maps",
    "collect_maps_tta",
    "fair_scores",
    "normalization_scores",
    "reference_rows",
    "score_maps",
    "score_model",
    "score_scoremaps",
    "summarize",
    "write_json_atomic",
    "write_maps",
]

MODE = "MaxBoxAccV2"


class _NormVariants(Mapping[str, tuple[str, float]]):
    """Column name -> (rule, percentile) of every registered normalisation, read from the registry on each use.

    A rule with a percentile grid (IVR's percentile is a hyper-parameter, Kim et al., ICCV 2021) gives one column
    per percentile, ``ivr0.1``, ``ivr0.2``, ...; any other rule one column under its name.
    """

    def _table(self) -> dict[str, tuple[str, float]]:
        from wsol.metrics.normalization import normalization_rules

        return {name: variant for rule in normalization_rules() for name, variant in rule.study_variants().items()}

    def __getitem__(self, name: str) -> tuple[str, float]:
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return f"NORM_VARIANTS({self._table()!r})"


# Score-map normalisations every run is scored under (name -> rule, percentile), in the registry's order; one is
# chosen per row on the tuning split.
NORM_VARIANTS: Mapping[str, tuple[str, float]] = _NormVariants()


@dataclass(frozen=True)
class SplitCurves:
    """BoxAcc(τ) curves of one split.

    Attributes:
        n_images: Images scored.
        thresholds: The τ grid.
        box: IoU threshold -> BoxAcc(τ) in percent (all contours, the V2 mode).
        top1loc: IoU threshold -> Top-1 Loc(τ) in percent (box right and top-1 class right), or None.
        top1: Top-1 accuracy in percent, or None for maps without a classifier.
    """

    n_images: int
    thresholds: np.ndarray
    box: dict[int, np.ndarray]
    top1loc: dict[int, np.ndarray] | None = None
    top1: float | None = None


def _from_accumulator(acc: Any, top1: float | None) -> SplitCurves:
    result = acc.compute()
    top1loc = None
    if acc.n_with_class == acc.n_images:
        table = acc.top1_correct[MODE] * 100.0 / float(acc.n_images)
        top1loc = {t: table[i] for i, t in enumerate(acc.iou_thresholds)}
    return SplitCurves(result.n_images, result.cam_thresholds, dict(result.modes[MODE].curves), top1loc, top1)


@dataclass(frozen=True)
class RawMaps:
    """A split's raw GT-class CAMs at feature resolution: all that rescoring under any normalisation needs.

    Attributes:
        maps: ``(N, h, w)`` float32 raw maps (the classifier's output, any sign).
        hits: ``(N,)`` whether the top-1 class was right.
        boxes: Per image, ``(n, 4)`` inclusive GT boxes in the ``size`` x ``size`` input's pixels.
        size: Side of the square input (the score maps are upsampled to it).
    """

    maps: np.ndarray
    hits: np.ndarray
    boxes: list[np.ndarray]
    size: int


@torch.no_grad()
def collect_maps(model: Any, loader: DataLoader) -> RawMaps:
    """The GT-class raw CAMs of ``model`` over ``loader`` and its top-1 hits (eval mode)."""
    model.eval()
    maps_out, hits_out, boxes, size = [], [], [], 0
    for batch in loader:
        images = batch["image"].to(model.device)
        labels = batch["label"].to(model.device)
        logits = model(images)
        hits_out.append((logits.argmax(dim=1) == labels).cpu().numpy())
        # GT-known maps through the method's own cams(): e.g. ACoL erases by the given class, not the predicted one.
        maps_out.append(model.cams(images, labels).float().cpu().numpy())
        boxes += [b.numpy().reshape(-1, 4) for b in batch["boxes"]]
        size = int(images.shape[-1])
    if not maps_out:
        raise ValueError("the loader yielded no images")
    return RawMaps(np.concatenate(maps_out), np.concatenate(hits_out), boxes, size)


# Test-time augmentation of the maps (flip x scales, averaged), as CAM seeds are made in WSSS (e.g. IRN).
TTA_SCALES: tuple[float, ...] = (0.75, 1.0, 1.25, 1.5)
# Names of the TTA maps' splits in a run's ``.maps.npz`` (no underscore: it separates split from field there).
TTA_SPLITS: dict[str, str] = {"tune": "tunetta", "val": "valtta"}


@torch.no_grad()
def collect_maps_tta(model: Any, loader: DataLoader, scales: Sequence[float] = TTA_SCALES) -> RawMaps:
    """The GT-class raw maps of ``model`` averaged over horizontal flips and input ``scales`` (eval mode).

    Each view's map is flipped back and resized (bilinear) to the scale-1 map's resolution before averaging; the
    top-1 hits come from the averaged logits. The result is stored like :func:`collect_maps`'s, so every
    normalisation and fusion rescoring applies to it unchanged.
    """
    import torch.nn.functional as F

    if not scales:
        raise ValueError("collect_maps_tta: scales is empty")
    model.eval()
    maps_out, hits_out, boxes, size = [], [], [], 0
    for batch in loader:
        images = batch["image"].to(model.device)
        labels = batch["label"].to(model.device)
        side = int(images.shape[-1])
        base = model.cams(images, labels).float()
        total = torch.zeros_like(base)
        logits = 0.0
        for scale in scales:
            resized = (
                images
                if scale == 1.0
                else F.interpolate(
                    images, scale_factor=scale, mode="bilinear", align_corners=False, recompute_scale_factor=False
                )
            )
            for flip in (False, True):
                view = resized.flip(-1) if flip else resized
                cams = model.cams(view, labels).float()
                cams = cams.flip(-1) if flip else cams
                total += F.interpolate(cams[:, None], size=base.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
                logits = logits + model(view).float().softmax(dim=1)
        maps_out.append((total / (2 * len(scales))).cpu().numpy())
        hits_out.append((logits.argmax(dim=1) == labels).cpu().numpy())
        boxes += [b.numpy().reshape(-1, 4) for b in batch["boxes"]]
        size = side
    if not maps_out:
        raise ValueError("the loader yielded no images")
    return RawMaps(np.concatenate(maps_out), np.concatenate(hits_out), boxes, size)


def score_maps(
    raw: RawMaps, cam_curve_interval: float = 0.001, normalization: str = "minmax", percentile: float = 0.6
) -> SplitCurves:
    """Top-1 and BoxAcc(τ) curves of raw maps: docs/protocol.md §1 upsampling, then the chosen normalisation.

    The accumulator is kept because the Top-1 Loc counts are needed at the tuning split's τ.
    """
    from wsol.metrics import BoxAccumulator, prepare_scoremaps

    acc = BoxAccumulator(cam_curve_interval=cam_curve_interval, modes=(MODE,))
    for start in range(0, len(raw.maps), 100):
        stop = start + 100
        cams = torch.from_numpy(raw.maps[start:stop])
        scoremaps = prepare_scoremaps(cams, (raw.size, raw.size), normalization, percentile).numpy()
        acc.update(scoremaps, raw.boxes[start:stop], raw.hits[start:stop])
    return _from_accumulator(acc, 100.0 * float(raw.hits.sum()) / len(raw.hits))


def score_scoremaps(
    scoremaps: np.ndarray,
    boxes: Sequence[np.ndarray],
    cam_curve_interval: float = 0.001,
    hits: np.ndarray | None = None,
) -> SplitCurves:
    """BoxAcc(τ) curves of score maps already at the input's size and in [0, 1] (e.g. fused or saliency maps).

    Args:
        scoremaps: ``(N, H, W)`` score maps, normalised as the protocol needs them.
        boxes: Per image, ``(n, 4)`` inclusive GT boxes.
        cam_curve_interval: Step of the τ grid.
        hits: ``(N,)`` top-1 hits of a classifier (Top-1 Loc and top-1 are then reported), or None.
    """
    from wsol.metrics import BoxAccumulator

    if len(scoremaps) != len(boxes) or (hits is not None and len(hits) != len(boxes)):
        raise ValueError(f"score_scoremaps: {len(scoremaps)} maps, {len(boxes)} box lists and hits of another length")
    acc = BoxAccumulator(cam_curve_interval=cam_curve_interval, modes=(MODE,))
    for start in range(0, len(scoremaps), 100):
        stop = start + 100
        acc.update(scoremaps[start:stop], list(boxes[start:stop]), None if hits is None else hits[start:stop])
    top1 = None if hits is None else 100.0 * float(np.sum(hits)) / len(hits)
    return _from_accumulator(acc, top1)


def score_model(model: Any, loader: DataLoader, cam_curve_interval: float = 0.001) -> SplitCurves:
    """Top-1 accuracy and the min-max GT-class CAMs' BoxAcc(τ) curves of ``model`` over ``loader``.

    The maps follow docs/protocol.md §1 (bicubic upsampling to the input, min-max), as in
    :func:`wsol.evaluation.localization.evaluate_localization`.
    """
    return score_maps(collect_maps(model, loader), cam_curve_interval)


def normalization_scores(
    tune: RawMaps, val: RawMaps, cam_curve_interval: float = 0.001, names: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Per entry of :data:`NORM_VARIANTS` (or of ``names``): tuning and val summaries and the fair number."""
    out = {}
    for name, (rule, percentile) in NORM_VARIANTS.items():
        if names is not None and name not in names:
            continue
        curves = {"tune": score_maps(tune, cam_curve_interval, rule, percentile)}
        curves["val"] = score_maps(val, cam_curve_interval, rule, percentile)
        out[name] = {
            "tune": summarize(curves["tune"]),
            "val": summarize(curves["val"]),
            "fair": fair_scores(curves["tune"], curves["val"]),
        }
    return out


def write_maps(path: Path, splits: dict[str, RawMaps]) -> None:
    """Save each split's raw maps, hits and boxes (compressed npz, written atomically) for later rescoring."""
    arrays: dict[str, np.ndarray] = {}
    for split, raw in splits.items():
        arrays[f"{split}_maps"] = raw.maps.astype(np.float32)
        arrays[f"{split}_hits"] = raw.hits.astype(bool)
        arrays[f"{split}_boxes_flat"] = np.concatenate(raw.boxes).astype(np.int32)
        arrays[f"{split}_box_counts"] = np.array([len(b) for b in raw.boxes], dtype=np.int32)
        arrays[f"{split}_size"] = np.array(raw.size)
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays))


def read_maps(path: Path) -> dict[str, RawMaps]:
    """The splits saved by :func:`write_maps` (no pickles are read)."""
    out = {}
    with np.load(path, allow_pickle=False) as data:
        for split in sorted({k.split("_", 1)[0] for k in data.files}):
            counts = data[f"{split}_box_counts"]
            boxes = np.split(data[f"{split}_boxes_flat"].astype(np.int64), np.cumsum(counts)[:-1])
            out[split] = RawMaps(data[f"{split}_maps"], data[f"{split}_hits"], boxes, int(data[f"{split}_size"]))
    return out


def summarize(curves: SplitCurves) -> dict[str, Any]:
    """The reference's numbers on one split: MaxBoxAccV2, max per IoU, its first τ, Top-1 Loc, top-1."""
    per_iou = {str(t): float(c.max()) for t, c in curves.box.items()}
    out: dict[str, Any] = {
        MODE: float(np.mean(list(per_iou.values()))),
        "per_iou": per_iou,
        "tau": {str(t): float(curves.thresholds[int(np.argmax(c))]) for t, c in curves.box.items()},
        "top1": curves.top1,
        "n_images": curves.n_images,
    }
    if curves.top1loc is not None:
        out["Top1Loc"] = float(np.mean([c.max() for c in curves.top1loc.values()]))
    return out


def fair_scores(tune: SplitCurves, val: SplitCurves) -> dict[str, Any]:
    """BoxAcc on val at the τ (per IoU) that maximised BoxAcc on the tuning split (first maximiser).

    Raises:
        ValueError: The two splits were scored with different τ grids or IoU thresholds.
    """
    if not np.array_equal(tune.thresholds, val.thresholds) or tune.box.keys() != val.box.keys():
        raise ValueError("tuning and val curves must share the τ grid and the IoU thresholds")
    index = {t: int(np.argmax(c)) for t, c in tune.box.items()}
    per_iou = {str(t): float(val.box[t][i]) for t, i in index.items()}
    out: dict[str, Any] = {
        MODE: float(np.mean(list(per_iou.values()))),
        "per_iou": per_iou,
        "tau": {str(t): float(tune.thresholds[i]) for t, i in index.items()},
    }
    if val.top1loc is not None:
        out["Top1Loc"] = float(np.mean([val.top1loc[t][i] for t, i in index.items()]))
    return out


def _write_npz(path: Path, maps: np.ndarray, loader: DataLoader) -> None:
    boxes = [b.numpy().reshape(-1, 4) for batch in loader for b in batch["boxes"]]
    cams = np.repeat(maps[None].astype(np.float32), len(boxes), axis=0)
    # Compressed: a map repeated over the split shrinks to a few kB. A temporary file of its own (studies sharing
    # --out may write the same reference at the same time), renamed over the target.
    arrays = {
        "cams": cams,
        "gt_boxes_flat": np.concatenate(boxes).astype(np.float32),
        "gt_box_counts": np.array([len(b) for b in boxes]),
    }
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays))


def reference_rows(data: Any, folder: Path, cam_curve_interval: float = 0.001) -> dict[str, dict[str, Any]]:
    """The rows that need no labels and no training, scored on the tuning and val splits.

    The centre-Gaussian and all-ones rows are scored by ``wsol evaluate --npz``: ``folder/<name>_<split>.npz``
    (its input) and ``folder/<name>.json`` (the tuning and val summaries and the fair number); an existing JSON
    of the same settings is reused. Then the saliency cues, their fusions with the centre prior and the
    label-free baseline (:func:`wsol.study.label_free.label_free_rows`; the returned ``label_free_baseline``
    entry names the chosen row).
    """
    from wsol.evaluation import NpzSource, evaluate
    from wsol.evaluation.priors import all_ones, center_gaussian
    from wsol.study.label_free import label_free_rows

    folder.mkdir(parents=True, exist_ok=True)
    size = data.image_size
    rows = {}
    for name, maps in (("center_gaussian", center_gaussian(size, size)), ("all_ones", all_ones(size, size))):
        path = folder / f"{name}.json"
        key = {"cam_curve_interval": cam_curve_interval, **data.eval_description}
        if path.is_file():
            row = json.loads(path.read_text())
            if row.get("settings") == json.loads(json.dumps(key)):
                rows[name] = row
                continue
        curves = {}
        for split in ("tune", "val"):
            npz = folder / f"{name}_{split}.npz"
            _write_npz(npz, maps, data.eval_loader(split))
            boxes = evaluate(NpzSource(npz), metrics=["boxes"], cam_curve_interval=cam_curve_interval).boxes
            mode = boxes.modes[MODE]
            curves[split] = SplitCurves(boxes.n_images, boxes.cam_thresholds, dict(mode.curves))
        row = {
            "method": name,
            "settings": key,
            "tune": summarize(curves["tune"]),
            "val": summarize(curves["val"]),
            "fair": fair_scores(curves["tune"], curves["val"]),
        }
        write_json_atomic(path, row)
        rows[name] = row
    rows.update(label_free_rows(data, folder, cam_curve_interval, center=rows["center_gaussian"]))
    return rows


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file."""
    write_text(path, json.dumps(payload, indent=1, sort_keys=True))
