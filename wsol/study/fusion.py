"""The class map fused with a label-free cue and the centre prior, rescored from a run's kept raw maps.

The fused score map is ``w1 * C + w2 * S + w3 * P``: ``C`` the GT-class map upsampled (bicubic) to the input and
normalised by one of :data:`CLASS_MAP_NORMS`, ``S`` the cue min-max normalised, ``P`` the centre Gaussian, then
min-max normalised as the protocol does. The weights (a simplex grid with ``w1 >= step``, so the class map is
always in) and the class map's normalisation are chosen on the tuning split only; val is scored once, at the τ
chosen on the tuning split, as :func:`wsol.study.scoring.fair_scores` does.

:func:`fused_runs` does this for every run of a study folder that kept its maps, caching each run's result in
``seed<N>.fused.json`` beside it, and returns run-like records (rows ``<row>+<cue>`` and, from the test-time
augmented maps, ``<row>_tta+<cue>``) for a report (docs/saliency.md §6).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsol.study.scoring import (
    TTA_SPLITS,
    RawMaps,
    fair_scores,
    read_maps,
    score_scoremaps,
    summarize,
    write_json_atomic,
)

__all__ = [
    "CLASS_MAP_NORMS",
    "FUSION_VERSION",
    "class_map_fusion",
    "choose_fusion",
    "class_scoremaps",
    "fuse_class_map",
    "fused_runs",
    "weight_grid",
]

CLASS_MAP_NORMS: tuple[str, ...] = ("minmax", "max")
FUSION_VERSION = 1
_V2 = "MaxBoxAccV2"


def weight_grid(step: float = 0.1) -> list[tuple[float, float, float]]:
    """Weights ``(w1, w2, w3)`` of class map, cue and prior on the simplex, in steps of ``step``, with ``w1 >= step``.

    Ordered by ``w1`` then ``w2`` ascending (the order that breaks ties).

    Raises:
        ValueError: ``step`` does not divide 1 into a whole number of steps.
    """
    n = round(1.0 / step)
    if n < 1 or abs(n * step - 1.0) > 1e-9:
        raise ValueError(f"weight_grid: step must be 1/n for a whole n, got {step}")
    return [(i / n, j / n, (n - i - j) / n) for i in range(1, n + 1) for j in range(0, n - i + 1)]


def class_scoremaps(raw: RawMaps, normalization: str = "minmax") -> np.ndarray:
    """The raw class maps upsampled (bicubic) to the input size and normalised: ``(N, size, size)`` float64."""
    import torch

    from wsol.metrics import prepare_scoremaps

    return prepare_scoremaps(torch.from_numpy(np.asarray(raw.maps)), (raw.size, raw.size), normalization).numpy()


def fuse_class_map(
    class_maps: np.ndarray, cue: np.ndarray, prior: np.ndarray, weights: tuple[float, float, float]
) -> np.ndarray:
    """``w1 * class_maps + w2 * minmax(cue) + w3 * minmax(prior)``, then min-max per map (the protocol's score maps).

    Args:
        class_maps: ``(N, H, W)`` class score maps already normalised (:func:`class_scoremaps`).
        cue: ``(N, H, W)`` raw cue maps.
        prior: ``(H, W)`` prior map.
        weights: ``(w1, w2, w3)``.
    """
    from wsol.saliency.color import minmax

    return _fuse(class_maps, minmax(cue), minmax(prior), weights)


def _fuse(
    class_maps: np.ndarray, cue01: np.ndarray, prior01: np.ndarray, weights: tuple[float, float, float]
) -> np.ndarray:
    # Vectorised min-max with the protocol's order of operations ((x - min) / (max - min); constant -> zeros).
    from wsol.saliency.color import minmax

    w1, w2, w3 = weights
    return minmax(w1 * class_maps + w2 * cue01 + w3 * prior01)


def _check(raw: RawMaps, cue: np.ndarray, name: str) -> None:
    if cue.shape != (len(raw.maps), raw.size, raw.size):
        raise ValueError(
            f"class_map_fusion: the {name} cue maps are {cue.shape}, expected one {raw.size}x{raw.size} map per "
            f"image of the class maps ({len(raw.maps)})"
        )


def _prior01(size: int, prior: np.ndarray | None) -> np.ndarray:
    from wsol.evaluation.priors import center_gaussian
    from wsol.saliency.color import minmax

    return minmax(center_gaussian(size, size) if prior is None else np.asarray(prior))


def choose_fusion(
    tune: RawMaps,
    cue_tune: np.ndarray,
    prior: np.ndarray | None = None,
    norms: Sequence[str] = CLASS_MAP_NORMS,
    step: float = 0.1,
    cam_curve_interval: float = 0.001,
) -> tuple[str, tuple[float, float, float], dict[str, float]]:
    """The class-map normalisation and weights with the best tuning MaxBoxAccV2 (first on a tie), reading tune only.

    Returns:
        ``(normalisation, (w1, w2, w3), best tuning MaxBoxAccV2 under each normalisation)``.
    """
    from wsol.saliency.color import minmax

    _check(tune, cue_tune, "tuning")
    prior01 = _prior01(tune.size, prior)
    cue01 = minmax(cue_tune)
    best: tuple[float, str, tuple[float, float, float]] | None = None
    by_norm: dict[str, float] = {}
    for norm in norms:
        class_maps = class_scoremaps(tune, norm)
        for weights in weight_grid(step):
            # Top-1 hits are left out of the search (they do not move MaxBoxAccV2) and added once chosen.
            curves = score_scoremaps(_fuse(class_maps, cue01, prior01, weights), tune.boxes, cam_curve_interval)
            value = summarize(curves)[_V2]
            by_norm[norm] = max(by_norm.get(norm, -np.inf), value)
            if best is None or value > best[0]:
                best = (value, norm, weights)
    if best is None:
        raise ValueError("class_map_fusion: no class-map normalisation given")
    return best[1], best[2], by_norm


def class_map_fusion(
    tune: RawMaps,
    val: RawMaps,
    cue_tune: np.ndarray,
    cue_val: np.ndarray,
    prior: np.ndarray | None = None,
    norms: Sequence[str] = CLASS_MAP_NORMS,
    step: float = 0.1,
    cam_curve_interval: float = 0.001,
) -> dict[str, Any]:
    """Choose the fusion's weights and the class map's normalisation on the tuning split; score val once.

    Args:
        tune: The tuning split's raw class maps (or its test-time augmented ones).
        val: The val split's raw class maps, same kind.
        cue_tune: ``(N_tune, size, size)`` raw cue maps of the same tuning images, in the same order.
        cue_val: ``(N_val, size, size)`` raw cue maps of the val images.
        prior: ``(size, size)`` prior (default: the centre Gaussian).
        norms: Class-map normalisations tried (names of :mod:`wsol.metrics.normalization`).
        step: Step of the weight grid (:func:`weight_grid`).
        cam_curve_interval: Step of the τ grid.

    Returns:
        ``tune`` and ``val`` summaries, ``fair`` (val at the tuning τ), ``weights`` (``class_map``, ``cue``,
        ``prior``), ``class_map_norm`` and ``tune_by_norm`` (the best tuning MaxBoxAccV2 under each normalisation).
        Val's boxes and maps are read only after every choice is made.

    Raises:
        ValueError: Cue maps that do not match the class maps' images or size, or boxes that differ between the
            class maps and the cue (maps of another draw).
    """
    from wsol.saliency.color import minmax

    _check(tune, cue_tune, "tuning")
    _check(val, cue_val, "val")
    norm, weights, by_norm = choose_fusion(tune, cue_tune, prior, norms, step, cam_curve_interval)
    prior01 = _prior01(tune.size, prior)
    cue01 = minmax(cue_tune)
    tune_curves = score_scoremaps(
        _fuse(class_scoremaps(tune, norm), cue01, prior01, weights), tune.boxes, cam_curve_interval, tune.hits
    )
    fused = _fuse(class_scoremaps(val, norm), minmax(cue_val), prior01, weights)
    val_curves = score_scoremaps(fused, val.boxes, cam_curve_interval, val.hits)
    return {
        "tune": summarize(tune_curves),
        "val": summarize(val_curves),
        "fair": fair_scores(tune_curves, val_curves),
        "weights": dict(zip(("class_map", "cue", "prior"), weights, strict=True)),
        "class_map_norm": norm,
        "tune_by_norm": by_norm,
    }


def _same_boxes(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(np.asarray(x).reshape(-1, 4), np.asarray(y).reshape(-1, 4)) for x, y in zip(a, b, strict=True)
    )


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fused_runs(
    folder: Path,
    data: Any,
    cue: str = "mbplus",
    rows: Sequence[str] | None = None,
    regimes: Sequence[str] | None = None,
    norms: Sequence[str] = CLASS_MAP_NORMS,
    step: float = 0.1,
    cam_curve_interval: float = 0.001,
    workers: int | None = 1,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Fuse every kept class map of a study folder with ``cue`` and the centre prior; one record per run and kind.

    Each ``runs/<regime>/<row>/<variant>/seed<N>.maps.npz`` is fused by :func:`class_map_fusion` (its ``tune``/
    ``val`` maps and, when kept, the test-time augmented ``tunetta``/``valtta``); the result is cached in
    ``seed<N>.fused.json`` beside it (written atomically), keyed by the settings, the cue cache's key and the
    maps file's SHA-1, so it is recomputed when any of them changes. The cue maps come from
    :func:`wsol.study.label_free.load_cue_maps` (cached in ``folder/reference``).

    Args:
        folder: The study folder (``wsol study small-data --out``).
        data: The study's splits (the same draw the runs were trained on).
        cue: Registered cue name.
        rows: Only these rows (method names); None fuses every row with kept maps.
        regimes: Only these regimes; None: every one.
        norms: Class-map normalisations tried on the tuning split.
        step: Step of the weight grid.
        cam_curve_interval: Step of the τ grid.
        workers: Processes that fuse the runs whose cache is stale, one run each at a time (None: one per CPU
            core); each search is the same pure computation in any process, so the records do not depend on it.
        progress: Show a progress bar over the runs being fused.

    Returns:
        Run-like records, one per run and kind: ``method`` (``<row>+<cue>`` or ``<row>_tta+<cue>``), ``variant``,
        ``regime``, ``seed``, ``source`` (the source row), ``supervision``, ``n_train``, ``config_hash``,
        ``seconds`` (the source run's, plus ``fusion``: this fusion's seconds; ``total`` includes it), the ``tune``,
        ``val`` and ``fair`` summaries and ``fusion`` (weights, class-map normalisation, tuning scores).

    Raises:
        ValueError: A run's maps do not belong to ``data`` (other images or boxes).
    """
    from tqdm.auto import tqdm

    from wsol.study.label_free import load_cue_maps

    folder = Path(folder)
    reference = folder / "reference"
    cues = {split: load_cue_maps(data, split, reference, (cue,)) for split in ("tune", "val")}
    settings = {
        "version": FUSION_VERSION,
        "cue": cue,
        "norms": list(norms),
        "step": step,
        "cam_curve_interval": cam_curve_interval,
        "cue_key": {s: c.key for s, c in cues.items()},
    }
    # maps -> (regime, row, variant, stem, run result, cache); the stale ones -> (cache file, its key)
    found: dict[Path, tuple[str, str, str, str, Path, dict[str, Any]]] = {}
    stale: dict[Path, tuple[Path, dict[str, Any]]] = {}
    for maps_path in sorted((folder / "runs").glob("*/*/*/seed*.maps.npz")):
        regime, row, variant = maps_path.relative_to(folder / "runs").parts[:3]
        if (rows is not None and row not in rows) or (regimes is not None and regime not in regimes):
            continue
        stem = maps_path.name.removesuffix(".maps.npz")
        run_path = maps_path.with_name(f"{stem}.json")
        if not run_path.is_file():
            continue  # maps without a finished result: the run is being rewritten
        cache_path = maps_path.with_name(f"{stem}.fused.json")
        key = json.loads(json.dumps({**settings, "maps_sha1": _sha1(maps_path)}))
        cached = _read_cached(cache_path)
        found[maps_path] = (regime, row, variant, stem, run_path, cached)
        if cached.get("settings") != key:
            stale[maps_path] = (cache_path, key)
    with tqdm(total=len(stale), desc=f"fusing {folder.name}", unit="run", disable=not progress or not stale) as bar:
        for maps_path, kinds in _fuse_runs(list(stale), cues, cue, norms, step, cam_curve_interval, workers):
            cache_path, key = stale[maps_path]
            cached = {"settings": key, "kinds": kinds}
            write_json_atomic(cache_path, cached)  # each run's search is kept as soon as it is done
            found[maps_path] = (*found[maps_path][:5], cached)
            bar.update()
    records: list[dict[str, Any]] = []
    for regime, row, variant, stem, run_path, cached in found.values():
        run = json.loads(run_path.read_text(encoding="utf-8"))
        for kind, result in cached["kinds"].items():
            seconds = dict(run.get("seconds", {}))
            seconds["total"] = (seconds.get("total") or 0.0) + result["seconds"]
            seconds["fusion"] = result["seconds"]
            records.append(
                {
                    "method": f"{row}{'' if kind == 'plain' else '_' + kind}+{cue}",
                    "variant": variant,
                    "regime": regime,
                    "seed": int(run.get("seed", stem.removeprefix("seed"))),
                    "source": row,
                    "supervision": run.get("supervision", "labels"),
                    "n_train": run.get("n_train"),
                    "config_hash": run.get("config_hash", ""),
                    "seconds": seconds,
                    **{part: result[part] for part in ("tune", "val", "fair")},
                    "fusion": {k: result[k] for k in ("weights", "class_map_norm", "tune_by_norm")} | {"cue": cue},
                }
            )
    return records


def _fuse_runs(
    paths: Sequence[Path],
    cues: dict[str, Any],
    cue: str,
    norms: Sequence[str],
    step: float,
    interval: float,
    workers: int | None,
) -> Iterator[tuple[Path, dict[str, dict[str, Any]]]]:
    # ``(path, kinds)`` per run as each search ends: here, or spread over fresh ("spawn") processes that each
    # receive the cue maps once and use one torch thread (the search is single-threaded numba and numpy). The
    # first failure cancels the searches not yet started and is raised.
    n = min(len(paths), (os.cpu_count() or 1) if workers is None else workers)
    if n <= 1:
        for path in paths:
            yield path, _fuse_run(path, cues, cue, norms, step, interval)
        return
    from functools import partial

    from wsol.evaluation.pool import map_in_processes

    search = partial(_worker_fuse, cue=cue, norms=tuple(norms), step=step, interval=interval)
    yield from map_in_processes(search, paths, n, start_method="spawn", initializer=_worker_init, initargs=(cues,))


_WORKER_CUES: dict[str, Any] = {}


def _worker_init(cues: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(1)
    _WORKER_CUES.update(cues)


def _worker_fuse(path: Path, cue: str, norms: Sequence[str], step: float, interval: float) -> dict[str, dict[str, Any]]:
    return _fuse_run(path, _WORKER_CUES, cue, norms, step, interval)


def _read_cached(path: Path) -> dict[str, Any]:
    # A missing or unreadable cache is recomputed (it is only ever written whole, so this is rare).
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def _fuse_run(
    maps_path: Path, cues: dict[str, Any], cue: str, norms: Sequence[str], step: float, interval: float
) -> dict[str, dict[str, Any]]:
    try:
        splits = read_maps(maps_path)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{maps_path}: unreadable maps file ({err})") from err
    out = {}
    for kind, (tune_name, val_name) in (("plain", ("tune", "val")), ("tta", (TTA_SPLITS["tune"], TTA_SPLITS["val"]))):
        if tune_name not in splits or val_name not in splits:
            continue
        tune, val = splits[tune_name], splits[val_name]
        for raw, split in ((tune, "tune"), (val, "val")):
            if not _same_boxes(raw.boxes, cues[split].boxes):
                raise ValueError(f"{maps_path}: its {split} boxes differ from the study data's; maps of another draw?")
        start = time.perf_counter()
        result = class_map_fusion(tune, val, cues["tune"].maps[cue], cues["val"].maps[cue], None, norms, step, interval)
        out[kind] = {**result, "seconds": time.perf_counter() - start}
    return out
