"""The study runner: plan the grid from the results so far, train what is missing, resume for free.

Every finished run leaves one JSON file, ``runs/<regime>/<method>/<variant>/seed<N>.json``, written
atomically; a run whose file exists is never trained again. The plan is recomputed after each run,
because later runs depend on earlier ones: a row with several variants first trains each at the first
seed and keeps the best on the tuning split; the combination is decided once every row is complete.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsol.study.data import StudyData
from wsol.study.grid import (
    BASE_CONFIG,
    COMBO,
    SMALL_DATA_METHODS,
    MethodSpec,
    RunSpec,
    build_callbacks,
    build_model,
    config_hash,
    merge,
)
from wsol.study.planner import plan_runs
from wsol.study.scoring import (
    NORM_VARIANTS,
    TTA_SPLITS,
    collect_maps,
    collect_maps_tta,
    normalization_scores,
    read_maps,
    reference_rows,
    score_maps,
    summarize,
    write_json_atomic,
    write_maps,
)

logger = logging.getLogger(__name__)

__all__ = ["MAPS_KEY", "StudySettings", "run_study", "train_and_score"]

# A result's raw maps travel under this key from training to the runner, which saves them beside the JSON
# (``<key>.maps.npz``) so that a run can be rescored under another normalisation without retraining.
MAPS_KEY = "_raw_maps"


@dataclass
class StudySettings:
    """How the grid is run.

    Attributes:
        out: Output folder (``runs/``, ``reference/``, ``results.csv``, ``results.md``, ``results.png``).
        seeds: Seeds of every configuration (the first one also tunes the variants).
        base: Overrides of :data:`~wsol.study.grid.BASE_CONFIG` for every run (e.g. ``{"epochs": 1}``).
        combination: Whether to add the combination row once the single rows are complete.
        cam_curve_interval: Δ of the τ grid (0.001, the papers').
        accelerator: Lightning accelerator.
        limit_train_batches: Cap on batches per epoch (tests only).
        lightning_bar: Show Lightning's progress bar inside each run.
        progress: Show the bar over runs.
        refresh: Rows whose finished runs predate the normalisation scores (no ``norms`` entry) are retrained.
        run_seeds: Train only the runs of these seeds (empty: every seed); several processes or machines sharing
            one ``out`` folder can split a grid by seed. Variants are still chosen on the first seed's runs, so a
            row waits until those exist.
        keep_models: Keep label-only models that another row can reuse under ``<out>/models/`` and load them
            instead of training again (:mod:`wsol.study.model_store`): a PSOL-style row's stage 1 and the
            ``cam_hires16`` run of the same draw and seed are one model. About 20 MB per ResNet-10 model.
    """

    out: Path
    seeds: Sequence[int] = (0, 1, 2)
    base: dict[str, Any] = field(default_factory=dict)
    combination: bool = True
    cam_curve_interval: float = 0.001
    accelerator: str = "auto"
    limit_train_batches: int | float | None = None
    lightning_bar: bool = False
    progress: bool = True
    refresh: Sequence[str] = ()
    run_seeds: Sequence[int] = ()
    keep_models: bool = True


def _fit(model: Any, loader: Any, config: dict[str, Any], settings: StudySettings) -> Any:
    """Train ``model`` on ``loader`` with the recipe's regime; returns the finished Trainer."""
    import pytorch_lightning as pl

    trainer = pl.Trainer(
        max_epochs=config["epochs"],
        accelerator=settings.accelerator,
        devices=1,
        precision=config.get("precision", "32-true"),
        logger=False,
        callbacks=build_callbacks(config),
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=settings.lightning_bar,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        limit_train_batches=settings.limit_train_batches,
    )
    trainer.fit(model, train_dataloaders=loader)
    return trainer


def _report_rows(methods: Sequence[MethodSpec]) -> tuple[MethodSpec, ...]:
    """The rows a report covers: every registered row in registry order (``methods``' own spec where a name is
    both), then the rows of ``methods`` that are not registered."""
    from wsol.study.rows import study_rows

    given = {m.name: m for m in methods}
    registered = tuple(given.pop(row.name, row) for row in study_rows())
    return (*registered, *given.values())


def _stage1_recipes(base: dict[str, Any]) -> set[str]:
    """Config hashes of every registered row's stage-1 recipe under ``base``: the plain runs worth keeping."""
    from wsol.study.rows import study_rows

    return {
        config_hash(merge(merge(BASE_CONFIG, base), overrides["stage1"]))
        for row in study_rows()
        for overrides in row.variants.values()
        if isinstance(overrides.get("stage1"), dict)
    }


@dataclass
class _Trained:
    """How a model came to be trained: by this run, or loaded from the study's model store."""

    epochs: int
    reused: dict[str, Any] | None = None  # the store's record, with load_seconds
    saved_seconds: float = 0.0  # training seconds the store saved this run (its record's minus the load)


def _fit_or_load(
    model: Any, loader: Any, config: dict[str, Any], spec: RunSpec, data: StudyData, settings: StudySettings, keep: bool
) -> _Trained:
    """Train ``model``, or load the weights that an earlier run of the same recipe, regime, seed and data left in
    the model store (:mod:`wsol.study.model_store`); with ``keep``, a model trained here is stored for later runs.
    Only label-only recipes use the store.
    """
    from wsol.study.model_store import ModelStore, label_only, model_key

    if not (settings.keep_models and label_only(config)):
        return _Trained(_fit(model, loader, config, settings).current_epoch)
    store = ModelStore.of(settings.out)
    # The class names join the description: two draws of one dataset share its name and split sizes.
    described = {**data.description, "classes": list(data.class_names)}
    key = model_key(config, spec.regime, spec.seed, described, settings.limit_train_batches, settings.accelerator)
    start = time.perf_counter()
    record = store.load(key, model)
    if record is not None:
        load = time.perf_counter() - start
        saved = max(0.0, float(record["seconds"]["train"]) - load)
        return _Trained(int(record["epochs"]), {**record, "load_seconds": load}, saved)
    trainer = _fit(model, loader, config, settings)
    if keep:
        train = time.perf_counter() - start
        store.save(
            key,
            model,
            {
                "trained_by": spec.key,
                "config_hash": config_hash(config),
                "epochs": trainer.current_epoch,
                "seconds": {"train": train, "per_epoch": train / max(1, trainer.current_epoch)},
            },
        )
    return _Trained(trainer.current_epoch)


def _box_regime(
    model: Any, spec: RunSpec, data: StudyData, settings: StudySettings
) -> tuple[list[Any], dict[str, Any]]:
    """A pseudo box for every training image of the run's regime from ``model``'s maps, at the τ that maximises
    its BoxAcc at IoU 50 on the tuning split (min-max): the one split with boxes that WSOL may read.

    Returns:
        One ``(1, 4)`` box per image, and the record: τ, the tuning scores, and the boxes' count, whole-image
        fallbacks and mean area fraction.
    """
    from wsol.study.pseudo import choose_tau, pseudo_boxes

    sizes = [data.pool[i].size for i in data.regimes[spec.regime]]
    fusion = spec.config.get("pseudo_fusion")
    if fusion:
        return _fused_box_regime(model, spec, data, settings, dict(fusion), sizes)
    tune = score_maps(collect_maps(model, data.eval_loader("tune")), settings.cam_curve_interval)
    tau = choose_tau(tune, 50)
    boxes, n_whole = pseudo_boxes(collect_maps(model, data.eval_loader(f"regime:{spec.regime}")), sizes, tau)
    return boxes, {"tau": tau, "tune": summarize(tune), "pseudo_boxes": _box_record(boxes, n_whole, sizes)}


def _box_record(boxes: list[Any], n_whole: int, sizes: list[tuple[int, int]]) -> dict[str, Any]:
    box_areas = [(b[0, 2] - b[0, 0] + 1) * (b[0, 3] - b[0, 1] + 1) for b in boxes]
    return {
        "n": len(boxes),
        "whole_image": n_whole,
        "mean_area_fraction": float(np.mean([a / (w * h) for a, (w, h) in zip(box_areas, sizes, strict=True)])),
    }


def _fused_box_regime(
    model: Any, spec: RunSpec, data: StudyData, settings: StudySettings, fusion: dict[str, Any], sizes: list[Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Pseudo boxes from the class map fused with a label-free cue and the centre prior (``pseudo_fusion``).

    The fusion's weights and class-map normalisation, then τ (BoxAcc at IoU 50), are chosen on the tuning split's
    fused maps (:func:`wsol.study.fusion.choose_fusion`), the one split with boxes that WSOL may read; the
    regime's images are then boxed on their own fused maps. The cue of the tuning split is cached in the study's
    ``reference/`` folder; the training images' cue maps are computed here (a few ms an image).
    """
    from wsol.evaluation.priors import center_gaussian
    from wsol.saliency import cue_maps
    from wsol.study.fusion import CLASS_MAP_NORMS, choose_fusion, class_scoremaps, fuse_class_map
    from wsol.study.label_free import eval_images, load_cue_maps
    from wsol.study.pseudo import boxes_from_scoremaps, choose_tau
    from wsol.study.scoring import score_scoremaps

    unknown = set(fusion) - {"cue", "step"}
    if "cue" not in fusion or unknown:
        raise ValueError(f"config of {spec.key}: pseudo_fusion takes 'cue' and optionally 'step', got {sorted(fusion)}")
    cue, step = str(fusion["cue"]), float(fusion.get("step", 0.1))
    tune_raw = collect_maps(model, data.eval_loader("tune"))
    cue_tune = load_cue_maps(data, "tune", Path(settings.out) / "reference", (cue,)).maps[cue]
    norm, weights, _ = choose_fusion(tune_raw, cue_tune, None, CLASS_MAP_NORMS, step, settings.cam_curve_interval)
    prior = center_gaussian(tune_raw.size, tune_raw.size)
    tune_maps = fuse_class_map(class_scoremaps(tune_raw, norm), cue_tune, prior, weights)
    tune = score_scoremaps(tune_maps, tune_raw.boxes, settings.cam_curve_interval, tune_raw.hits)
    tau = choose_tau(tune, 50)
    regime_raw = collect_maps(model, data.eval_loader(f"regime:{spec.regime}"))
    samples = data.regime_samples(spec.regime)
    cue_regime = cue_maps(cue, eval_images(samples, data.image_size))
    fused = fuse_class_map(class_scoremaps(regime_raw, norm), cue_regime, prior, weights)
    boxes, n_whole = boxes_from_scoremaps(fused, sizes, tau)
    return boxes, {
        "tau": tau,
        "tune": summarize(tune),
        "fusion": {
            "cue": cue,
            "class_map_norm": norm,
            "weights": dict(zip(("class_map", "cue", "prior"), weights, strict=True)),
        },
        "pseudo_boxes": _box_record(boxes, n_whole, sizes),
    }


def _pseudo_stage(spec: RunSpec, data: StudyData, settings: StudySettings) -> tuple[list[Any], dict[str, Any]]:
    """Stage 1 of the pseudo-box localizer: a WSOL model, its τ on the tuning split and its boxes on the regime.

    The stage-1 model is trained as a run of its recipe (``merge(base, config["stage1"])``) would be, with the
    same seed, on the same images, order and crops, but through :meth:`StudyData.regime_samples`, which drops the
    training images' GT boxes before any transform sees them. τ maximises the stage-1 maps' BoxAcc at IoU 50 on
    the tuning split (min-max), the one split with boxes that WSOL may read.

    Returns:
        One ``(1, 4)`` pseudo box per image of the regime, and what the result records of stage 1.
    """
    import pytorch_lightning as pl

    if not isinstance(spec.config.get("stage1"), dict):
        raise ValueError(f"config of {spec.key}: train_split 'pseudo' needs a 'stage1' dict of recipe overrides")
    start = time.perf_counter()
    config = merge(merge(BASE_CONFIG, settings.base), spec.config["stage1"])
    pl.seed_everything(spec.seed, workers=True, verbose=False)
    model = build_model(config, len(data.class_names), spec.seed)
    loader = data.train_loader(spec.regime, config["batch_size"], spec.seed, config["train_scale"], split="labels")
    fitted = _fit_or_load(model, loader, config, spec, data, settings, keep=True)
    trained = time.perf_counter()
    boxes, record = _box_regime(model, spec, data, settings)
    end = time.perf_counter()
    # A model loaded from the store is timed as the run that trained it ("wall": this run's own seconds).
    train = trained - start + fitted.saved_seconds
    record = {
        "config": config,
        "config_hash": config_hash(config),
        **record,
        "seconds": {
            "train": train,
            "pseudo_boxes": end - trained,
            "total": end - start + fitted.saved_seconds,
            "wall": end - start,
            "per_epoch": train / max(1, fitted.epochs),
        },
        **({"reused_model": _reuse_note(fitted.reused)} if fitted.reused else {}),
    }
    return boxes, record


def _reuse_note(record: dict[str, Any]) -> dict[str, Any]:
    """What a result records of a model loaded from the store."""
    return {"trained_by": record["trained_by"], "key": record["key"], "load_seconds": record["load_seconds"]}


def train_and_score(spec: RunSpec, data: StudyData, settings: StudySettings) -> dict[str, Any]:
    """Train one configuration and score it on the tuning and val splits (see :mod:`wsol.study.scoring`).

    A configuration with ``train_split: "pseudo"`` is the PSOL-style row (Zhang et al., CVPR 2020,
    arXiv 2002.11359): its ``stage1`` recipe is trained first and makes a pseudo box for every training image
    (:func:`_pseudo_stage`); the configuration itself (a box-supervised localizer such as ``FSL``) is then trained
    on those boxes and scored like every run. The result's ``stage1`` entry holds τ, the stage-1 tuning scores
    and its seconds. With ``rounds: R > 1`` the localizer is self-trained: each round's model boxes the training
    images again (τ from its own tuning maps) and a fresh model (same seed) learns from them; ``rounds`` records
    each relabelling. No GT box of a training image is read in that row.
    """
    import pytorch_lightning as pl
    import torch

    config = spec.config
    # CPU timings depend on what else runs on the machine: the load at the start is kept with them.
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    start = time.perf_counter()
    split = config.get("train_split", "regime")
    stage1: dict[str, Any] | None = None
    boxes = None
    rounds = int(config.get("rounds", 1))
    if rounds < 1 or (rounds > 1 and split != "pseudo"):
        raise ValueError(f"config of {spec.key}: rounds must be 1, or more with train_split 'pseudo', got {rounds}")
    saved = 0.0  # training seconds that models loaded from the store saved (stage 1's or this run's own)
    if split == "pseudo":
        boxes, stage1 = _pseudo_stage(spec, data, settings)
        saved = stage1["seconds"]["total"] - stage1["seconds"]["wall"]
    stage2_start = time.perf_counter()
    relabelled: list[dict[str, Any]] = []
    model: Any = None
    fitted = _Trained(0)
    for round_ in range(rounds):
        if round_:  # self-training: the last localizer boxes the training images again, and a fresh one learns
            boxes, record = _box_regime(model, spec, data, settings)
            relabelled.append(record)
            stage2_start = time.perf_counter()
        pl.seed_everything(spec.seed, workers=True, verbose=False)
        model = build_model(config, len(data.class_names), spec.seed)
        loader = data.train_loader(
            spec.regime, config["batch_size"], spec.seed, config["train_scale"], split=split, boxes=boxes
        )
        if rounds == 1 and split != "pseudo":
            # A plain run loads a model the store holds; it keeps its own when a stage 1 can reuse it.
            keep = config_hash(config) in _stage1_recipes(settings.base)
            fitted = _fit_or_load(model, loader, config, spec, data, settings, keep)
        else:
            fitted = _Trained(_fit(model, loader, config, settings).current_epoch)
    trained = time.perf_counter()
    stage2_train = trained - stage2_start + fitted.saved_seconds
    saved += fitted.saved_seconds
    tune = collect_maps(model, data.eval_loader("tune"))
    val = collect_maps(model, data.eval_loader("val"))
    norms = normalization_scores(tune, val, settings.cam_curve_interval)
    # The same maps under test-time augmentation, kept beside the plain ones for rescoring (not scored here).
    tune_tta = collect_maps_tta(model, data.eval_loader("tune"))
    val_tta = collect_maps_tta(model, data.eval_loader("val"))
    end = time.perf_counter()
    seconds = {
        # Every stage's training (and the pseudo boxes) counts as training; per_epoch is this model's own. A model
        # loaded from the store counts the seconds it took to train; "wall" is this run's own time.
        "train": trained - start + saved,
        "eval": end - trained,
        "total": end - start + saved,
        "per_epoch": stage2_train / max(1, fitted.epochs),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": load,
    }
    if saved:
        seconds["wall"] = end - start
    if stage1 is not None:
        # stage2: the last localizer's training and scoring; earlier rounds count in train and total only.
        seconds |= {"stage1": stage1["seconds"]["total"], "stage2": end - stage2_start + fitted.saved_seconds}
    return {
        "key": spec.key,
        "method": spec.method,
        "variant": spec.variant,
        "regime": spec.regime,
        "seed": spec.seed,
        "config": config,
        "config_hash": config_hash(config),
        "n_train": len(loader.dataset),
        # "boxes": a fully supervised reference row (trained on the tuning split's boxes, or with "supervision":
        # "boxes" on the regime's own GT boxes), never a WSOL method.
        "supervision": config.get("supervision", "boxes" if split == "tune" else "labels"),
        "data": data.description,
        "cam_curve_interval": settings.cam_curve_interval,
        # The protocol's min-max numbers at the top level; every normalisation under "norms".
        **norms["minmax"],
        "norms": norms,
        MAPS_KEY: {"tune": tune, "val": val, TTA_SPLITS["tune"]: tune_tta, TTA_SPLITS["val"]: val_tta},
        "seconds": seconds,
        **({"stage1": stage1} if stage1 is not None else {}),
        **({"rounds": relabelled} if relabelled else {}),
        **({"reused_model": _reuse_note(fitted.reused)} if fitted.reused else {}),
    }


def _rescored(path: Path, result: dict[str, Any], cam_curve_interval: float) -> dict[str, Any]:
    """The result scored under every entry of :data:`NORM_VARIANTS`, from its saved maps when it lacks some.

    A grid of normalisations that grew after a run was trained is filled in without retraining; the JSON is
    rewritten atomically. A run without saved maps (trained before they were kept) is returned as it is.
    """
    maps_path = path.with_name(path.stem + ".maps.npz")
    if "norms" not in result or set(result["norms"]) >= set(NORM_VARIANTS) or not maps_path.is_file():
        return result
    if result.get("cam_curve_interval", cam_curve_interval) != cam_curve_interval:
        return result
    splits = read_maps(maps_path)
    missing = [name for name in NORM_VARIANTS if name not in result["norms"]]
    added = normalization_scores(splits["tune"], splits["val"], cam_curve_interval, names=missing)
    result = {**result, "norms": {name: {**result["norms"], **added}[name] for name in NORM_VARIANTS}}
    write_json_atomic(path, result)
    return result


def _earlier_combinations(runs_dir: Path, plan: Any, regimes: Sequence[str], combination: bool) -> list[dict[str, Any]]:
    """Finished combination runs of a regime whose combination is not decided now (rows were added since).

    They stay in the report, with a note, until every row has its seeds and the combination is decided again.
    """
    if not combination:
        return []
    found = []
    for regime in regimes:
        if COMBO in plan.chosen.get(regime, {}):
            continue
        paths = sorted((runs_dir / regime / COMBO).glob("*/seed*.json"))
        if not paths:
            continue
        runs = [json.loads(p.read_text()) for p in paths]
        found += runs
        variant = runs[0]["variant"]
        plan.notes.setdefault(regime, []).append(
            f"combination: {variant} was decided before the newest rows existed; it is decided again once every "
            "row has all its seeds"
        )
        plan.chosen.setdefault(regime, {})[COMBO] = variant
    return found


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    # One Trainer per run: its banner lines and hints would bury the bar over runs. Restored on exit.
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for pattern in (
            r".*does not have many workers.*",
            r".*The number of training batches.*",
            r".*`validation_step` but have no `val_dataloader`.*",
            r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
        ):
            warnings.filterwarnings("ignore", message=pattern)
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def run_study(
    data: StudyData,
    settings: StudySettings,
    methods: Sequence[MethodSpec] = SMALL_DATA_METHODS,
    train_fn: Callable[[RunSpec, StudyData, StudySettings], dict[str, Any]] = train_and_score,
    dry_run: bool = False,
    report_only: bool = False,
) -> int:
    """Run (or resume) the grid and rewrite the report after every finished run.

    Args:
        data: The study's splits.
        settings: How to run.
        methods: The rows (default: :data:`~wsol.study.grid.SMALL_DATA_METHODS`).
        train_fn: Trains and scores one run (replaceable in tests).
        dry_run: Only print the plan with each run's state.
        report_only: Train nothing; rewrite the report from the finished runs.

    Returns:
        0 when every planned run has a result, 1 when some failed (their errors are in ``runs/``).
    """
    from tqdm.auto import tqdm

    from wsol.study.report import write_report

    out = Path(settings.out)
    runs_dir = out / "runs"
    cache: dict[str, dict[str, Any]] = {}

    def lookup(spec: RunSpec) -> dict[str, Any] | None:
        if spec.key not in cache:
            path = runs_dir / f"{spec.key}.json"
            if not path.is_file():
                return None
            result = json.loads(path.read_text())
            if spec.method in settings.refresh and "norms" not in result:
                return None
            if result.get("config_hash") != config_hash(spec.config):
                raise ValueError(
                    f"{path} holds a run of another recipe (config {result.get('config_hash')}, planned "
                    f"{config_hash(spec.config)}); use another --out or delete it to rerun"
                )
            cache[spec.key] = _rescored(path, result, settings.cam_curve_interval)
        return cache[spec.key]

    regimes = list(data.regimes)
    # The report covers every finished run of the folder, not only this process's rows and regimes: a process
    # given a subset (--methods, --regimes) rewrites the same report the whole grid would.
    report_methods = _report_rows(methods)
    report_regimes = regimes + sorted(
        p.name for p in runs_dir.glob("*") if p.is_dir() and p.name not in regimes and any(p.glob("*/*/seed*.json"))
    )

    def report() -> None:
        full = plan_runs(report_methods, report_regimes, settings.seeds, lookup, settings.base, settings.combination)
        results = [r for s in full.specs if (r := lookup(s))]
        results += _earlier_combinations(runs_dir, full, report_regimes, settings.combination)
        write_report(out, results, references, full.notes, full.chosen)

    if dry_run:
        plan = plan_runs(methods, regimes, settings.seeds, lookup, settings.base, settings.combination)
        for spec in plan.specs:
            print(f"{'done' if lookup(spec) else 'todo'}  {spec.key}")
        print(f"{len(plan.specs)} runs decidable now, {plan.total} in the whole grid")
        return 0
    references = reference_rows(data, out / "reference", settings.cam_curve_interval)
    failed: set[str] = set()
    plan = plan_runs(methods, regimes, settings.seeds, lookup, settings.base, settings.combination)
    done = sum(lookup(s) is not None for s in plan.specs)
    bar = tqdm(total=plan.total, initial=done, desc="study runs", disable=not settings.progress)
    with bar, _quiet_lightning():
        while not report_only:
            todo = [s for s in plan.specs if s.key not in failed and lookup(s) is None]
            if settings.run_seeds:
                todo = [s for s in todo if s.seed in settings.run_seeds]
            if not todo:
                break
            spec = todo[0]
            bar.set_postfix_str(spec.key)
            error = runs_dir / f"{spec.key}.error.txt"
            try:
                result = train_fn(spec, data, settings)
            except Exception as err:  # noqa: BLE001 - one broken run must not stop hours of grid
                failed.add(spec.key)
                error.parent.mkdir(parents=True, exist_ok=True)
                error.write_text(f"{type(err).__name__}: {err}\n")
                logger.error("wsol study: run %s failed: %s: %s", spec.key, type(err).__name__, err)
                continue
            maps = result.pop(MAPS_KEY, None)
            if maps is not None:
                write_maps(runs_dir / f"{spec.key}.maps.npz", maps)
            write_json_atomic(runs_dir / f"{spec.key}.json", result)
            error.unlink(missing_ok=True)  # an earlier failure is now stale
            cache[spec.key] = result
            bar.update(1)
            plan = plan_runs(methods, regimes, settings.seeds, lookup, settings.base, settings.combination)
            bar.total = max(plan.total, bar.n)
            report()
    report()
    undecided = plan.total - len(plan.specs)
    if settings.run_seeds and not failed and not report_only and undecided > 0:
        # Runs still undecided wait for other seeds' results; every seed has some among them (a row's variant
        # is chosen on seed 0's runs; the combination row waits for every seed). Nothing more can run here.
        seeds = ",".join(str(s) for s in settings.run_seeds)
        raise ValueError(
            f"--run-seeds {seeds}: {undecided} runs of the grid wait for other seeds' results (seed 0 must finish "
            "first: it chooses each row's variant; the combination row waits for every seed); rerun this command "
            "once they are done"
        )
    return 1 if failed else 0
