"""The study's label-free reference rows: saliency cues, their fusions with the centre prior, and the baseline.

Every cue of :data:`SALIENCY_CUES` is computed once per tuning and val image and cached in
``reference/saliency_<split>.npz`` (keyed by the data description and a fingerprint of the images, so another
draw or image size recomputes it). Each cue is a reference row, scored like the centre Gaussian; each is also
fused with the centre prior (``<cue>+center``), the form and weight chosen on the tuning split only. The
**label-free baseline** is the row with the best tuning MaxBoxAccV2 among the centre Gaussian, the cues and
their fusions (ties: the first name in sorted order); it is written to ``reference/label_free_baseline.json``
(docs/saliency.md §4, §5, §7).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsol.atomic import atomic_write
from wsol.study.scoring import SplitCurves, fair_scores, score_scoremaps, summarize, write_json_atomic

__all__ = [
    "BASELINE_FILE",
    "CACHE_VERSION",
    "SALIENCY_CUES",
    "CueSplit",
    "choose_label_free_baseline",
    "choose_prior_fusion",
    "eval_images",
    "label_free_rows",
    "load_cue_maps",
]

SALIENCY_CUES: tuple[str, ...] = ("mbd", "mbplus", "spectral_residual")
# Bump when a cue's formula changes, so every cached map is recomputed.
CACHE_VERSION = 1
BASELINE_FILE = "label_free_baseline.json"
_V2 = "MaxBoxAccV2"
# Reference rows that are not label-free localizers (all-ones is the metric's floor) or not rows at all.
_NOT_CANDIDATES = {"all_ones", "label_free_baseline"}


@dataclass(frozen=True)
class CueSplit:
    """The cue maps of one split's images, in the split's evaluation order.

    Attributes:
        maps: Cue name -> ``(N, H, W)`` float32 raw cue maps at the evaluation size.
        boxes: Per image, ``(n, 4)`` inclusive GT boxes at the evaluation size.
        seconds_per_image: Cue name -> seconds per image when the maps were computed.
        key: The cache key (data description, image fingerprint, cache version).
    """

    maps: dict[str, np.ndarray]
    boxes: list[np.ndarray]
    seconds_per_image: dict[str, float]
    key: dict[str, Any]


def eval_images(samples: Sequence[Any], size: int) -> list[np.ndarray]:
    """The samples' uint8 RGB images at ``size`` x ``size``, resized as the evaluation transform does (PIL bilinear)."""
    from PIL import Image

    out = []
    for sample in samples:
        image = sample.image
        if image.shape[:2] != (size, size):
            image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
        out.append(np.ascontiguousarray(image))
    return out


def _fingerprint(images: Sequence[np.ndarray], ids: Sequence[str]) -> str:
    digest = hashlib.sha1()
    for image_id, image in zip(ids, images, strict=True):
        digest.update(image_id.encode())
        digest.update(image.tobytes())
    return digest.hexdigest()


def _read_cache(path: Path, key: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    if not path.is_file():
        return {}, {}
    try:
        with np.load(path, allow_pickle=False) as data:
            if json.loads(str(data["key"])) != json.loads(json.dumps(key)):
                return {}, {}
            names = [f.removeprefix("maps_") for f in data.files if f.startswith("maps_")]
            seconds = json.loads(str(data["seconds"]))
            return {n: data[f"maps_{n}"] for n in names}, {n: float(seconds[n]) for n in names}
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: unreadable saliency cache ({err}); delete it to recompute") from err


def load_cue_maps(data: Any, split: str, folder: Path, names: Sequence[str] = SALIENCY_CUES) -> CueSplit:
    """The cue maps ``names`` of ``data``'s ``split`` (``"tune"`` or ``"val"``), computed once and cached.

    The cache ``folder/saliency_<split>.npz`` is reused when its key (data description less its per-regime entries,
    class names, image size and a SHA-1 of the images) matches; cues missing from it are computed and added, the
    others are not touched.

    Args:
        data: The study's splits (:class:`wsol.study.data.StudyData`).
        split: ``"tune"`` or ``"val"``.
        folder: Where the cache lives (the study's ``reference/`` folder).
        names: Registered cue names (:func:`wsol.saliency.list_cues`).
    """
    from wsol.saliency import cue_maps

    if split not in ("tune", "val"):
        raise ValueError(f"load_cue_maps: split must be 'tune' or 'val', got {split!r}")
    samples = {"tune": data.tune, "val": data.val}[split]
    images = eval_images(samples, data.image_size)
    boxes = [b.numpy().reshape(-1, 4).astype(np.int64) for batch in data.eval_loader(split) for b in batch["boxes"]]
    key = {
        "version": CACHE_VERSION,
        "split": split,
        "image_size": data.image_size,
        "class_names": list(data.class_names),
        "description": data.eval_description,
        "images_sha1": _fingerprint(images, [s.image_id for s in samples]),
    }
    path = Path(folder) / f"saliency_{split}.npz"
    maps, seconds = _read_cache(path, key)
    missing = [n for n in names if n not in maps]
    for name in missing:
        start = time.perf_counter()
        maps[name] = cue_maps(name, images)
        seconds[name] = (time.perf_counter() - start) / max(len(images), 1)
    if missing:
        arrays = {f"maps_{n}": m.astype(np.float32) for n, m in maps.items()}
        arrays["key"] = np.array(json.dumps(key))
        arrays["seconds"] = np.array(json.dumps(seconds))
        atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays))
    return CueSplit({n: maps[n] for n in names}, boxes, {n: seconds[n] for n in names}, key)


def _scoremaps(maps: np.ndarray) -> np.ndarray:
    from wsol.metrics import normalize_scoremaps

    return normalize_scoremaps(maps, "minmax")


def choose_prior_fusion(
    tune: np.ndarray,
    boxes: Sequence[np.ndarray],
    prior: np.ndarray,
    cam_curve_interval: float = 0.001,
) -> tuple[tuple[str, float], SplitCurves, dict[str, float]]:
    """The form and weight of :data:`wsol.saliency.prior_fusion.PRIOR_FUSIONS` best on the tuning maps.

    Args:
        tune: ``(N, H, W)`` raw cue maps of the tuning split.
        boxes: Their GT boxes.
        prior: The ``(H, W)`` prior.
        cam_curve_interval: Step of the τ grid.

    Returns:
        ``((form, weight), tuning curves of the choice, tuning MaxBoxAccV2 of every candidate)``; the first
        best candidate wins a tie.
    """
    from wsol.saliency.prior_fusion import PRIOR_FUSIONS, fuse_with_prior

    best: tuple[float, tuple[str, float], SplitCurves] | None = None
    scores = {}
    for form, weight in PRIOR_FUSIONS:
        curves = score_scoremaps(_scoremaps(fuse_with_prior(tune, prior, form, weight)), boxes, cam_curve_interval)
        value = summarize(curves)[_V2]
        scores[f"{form}:{weight:g}"] = value
        if best is None or value > best[0]:
            best = (value, (form, weight), curves)
    assert best is not None
    return best[1], best[2], scores


def choose_label_free_baseline(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """The row with the best tuning MaxBoxAccV2 (all-ones excluded; ties: the first name in sorted order).

    Raises:
        ValueError: No candidate row.
    """
    candidates = {k: v for k, v in rows.items() if k not in _NOT_CANDIDATES and "tune" in v}
    if not candidates:
        raise ValueError("choose_label_free_baseline: no label-free reference row")
    return max(sorted(candidates), key=lambda k: float(candidates[k]["tune"][_V2]))


def _row(name: str, settings: Mapping[str, Any], tune: SplitCurves, val: SplitCurves, **extra: Any) -> dict[str, Any]:
    return {
        "method": name,
        "settings": dict(settings),
        "tune": summarize(tune),
        "val": summarize(val),
        "fair": fair_scores(tune, val),
        **extra,
    }


def label_free_rows(
    data: Any,
    folder: Path,
    cam_curve_interval: float = 0.001,
    center: Mapping[str, Any] | None = None,
    cues: Sequence[str] = SALIENCY_CUES,
) -> dict[str, dict[str, Any]]:
    """Score every cue and its fusion with the centre prior; write their rows and the label-free baseline.

    Writes ``folder/<cue>.json`` and ``folder/<cue>+center.json`` (``method``, ``settings``, and the ``tune``,
    ``val`` and ``fair`` summaries, as the centre Gaussian's row; a fused row also records its ``fusion``: form,
    weight and every candidate's tuning score), reusing a row whose settings match, and
    ``folder/label_free_baseline.json`` (the chosen row's ``name``, its summaries and every candidate's tuning
    score).

    Args:
        data: The study's splits.
        folder: The study's ``reference/`` folder.
        cam_curve_interval: Step of the τ grid.
        center: The centre Gaussian's row (a baseline candidate); None leaves it out of the choice.
        cues: Registered cue names.

    Returns:
        Name -> row, the cues' and fusions' rows followed by ``label_free_baseline``.
    """
    from wsol.evaluation.priors import center_gaussian

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    size = data.image_size
    prior = center_gaussian(size, size)
    split_maps: dict[str, CueSplit] = {}

    def maps(split: str) -> CueSplit:
        if split not in split_maps:
            split_maps[split] = load_cue_maps(data, split, folder, cues)
        return split_maps[split]

    # The images' fingerprints tie every row to its draw (cheap: the images are hashed, not the cues computed).
    images = {
        s: _fingerprint(eval_images(d, size), [x.image_id for x in d])
        for s, d in (("tune", data.tune), ("val", data.val))
    }
    base_key = {
        "cam_curve_interval": cam_curve_interval,
        **data.eval_description,
        "class_names": list(data.class_names),
        "image_size": size,
        "images_sha1": images,
        "saliency_version": CACHE_VERSION,
    }
    rows: dict[str, dict[str, Any]] = {}
    for cue in cues:
        for name in (cue, f"{cue}+center"):
            path = folder / f"{name}.json"
            key = {**base_key, "cue": cue, "fused_with_center": name != cue}
            if path.is_file():
                row = json.loads(path.read_text(encoding="utf-8"))
                if row.get("settings") == json.loads(json.dumps(key)):
                    rows[name] = row
                    continue
            tune, val = maps("tune"), maps("val")
            cost = {"seconds_per_image": tune.seconds_per_image[cue]}
            if name == cue:
                curves_t = score_scoremaps(_scoremaps(tune.maps[cue]), tune.boxes, cam_curve_interval)
                curves_v = score_scoremaps(_scoremaps(val.maps[cue]), val.boxes, cam_curve_interval)
                row = _row(name, key, curves_t, curves_v, **cost)
            else:
                from wsol.saliency.prior_fusion import fuse_with_prior

                (form, weight), curves_t, candidates = choose_prior_fusion(
                    tune.maps[cue], tune.boxes, prior, cam_curve_interval
                )
                fused = _scoremaps(fuse_with_prior(val.maps[cue], prior, form, weight))
                curves_v = score_scoremaps(fused, val.boxes, cam_curve_interval)
                fusion = {"form": form, "weight": weight, "tune_by_candidate": candidates}
                row = _row(name, key, curves_t, curves_v, fusion=fusion, **cost)
            write_json_atomic(path, row)
            rows[name] = row
    candidates = {**({"center_gaussian": dict(center)} if center is not None else {}), **rows}
    chosen = choose_label_free_baseline(candidates)
    baseline = {
        "name": chosen,
        "settings": base_key,
        **{part: candidates[chosen][part] for part in ("tune", "val", "fair")},
        "candidates_tune": {k: float(v["tune"][_V2]) for k, v in sorted(candidates.items())},
    }
    write_json_atomic(folder / BASELINE_FILE, baseline)
    return {**rows, "label_free_baseline": baseline}
