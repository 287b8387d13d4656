"""The study runner: splits, fair scoring, planning, resume, failures, the report and ``wsol study``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from wsol.cli import main
from wsol.study import (
    BASE_CONFIG,
    SMALL_DATA_METHODS,
    MethodSpec,
    RunSpec,
    SplitCurves,
    StudySettings,
    choose_combination,
    combine,
    fair_scores,
    load_study_data,
    merge,
    plan_runs,
    run_study,
    split_per_class,
    summarize,
    train_and_score,
)
from wsol.study.grid import build_callbacks, build_model, config_hash
from wsol.study.report import write_report

TINY = {"train_per_class": 8, "val_per_class": 4, "image_size": 32, "num_classes": 3, "clutter": 2}
SMALL = {"epochs": 1, "batch_size": 8, "model": {"backbone_kwargs": {"width": 8}}}
TWO_ROWS = (
    MethodSpec("cam", None, {"default": {}}),
    MethodSpec("cutmix", "mixing", {"default": {"mixer": {"name": "cutmix", "alpha": 1.0}}}),
)


@pytest.fixture(scope="module")
def data():
    return load_study_data("synthetic", None, 32, 2, {"all": None, "n3": 3}, 0, TINY, TINY)


@pytest.fixture(scope="module")
def data_n3():
    """One regime of 3 images per class: the runner tests train 2 rows x 2 seeds."""
    return load_study_data("synthetic", None, 32, 2, {"n3": 3}, 0, TINY, TINY)


def _settings(out, **kw):
    return StudySettings(
        out=out, seeds=(0, 1), base=SMALL, combination=False, cam_curve_interval=0.01, progress=False, **kw
    )


def _curves(box, top1loc=None, top1=None):
    thresholds = np.arange(len(next(iter(box.values())))) / 10
    arrays = lambda d: None if d is None else {k: np.asarray(v, float) for k, v in d.items()}  # noqa: E731
    return SplitCurves(10, thresholds, arrays(box), arrays(top1loc), top1)


def _fake(spec, tune_v2, top1=50.0):
    # A result with the fields the planner and the report read; tune MaxBoxAccV2 = tune_v2.
    tune = _curves({30: [tune_v2, 0], 50: [tune_v2, 0], 70: [tune_v2, 0]}, top1=top1)
    val = _curves({30: [40, 60], 50: [20, 30], 70: [0, 10]}, {30: [10, 20], 50: [5, 5], 70: [0, 0]}, top1)
    return {
        "key": spec.key,
        "method": spec.method,
        "variant": spec.variant,
        "regime": spec.regime,
        "seed": spec.seed,
        "config": spec.config,
        "config_hash": config_hash(spec.config),
        "n_train": 18,
        "tune": summarize(tune),
        "val": summarize(val),
        "fair": fair_scores(tune, val),
        "seconds": {"train": 1.0, "eval": 1.0, "total": 2.0, "per_epoch": 1.0},
    }


def test_split_per_class_is_seeded_disjoint_and_balanced():
    labels = [0, 1, 2] * 10
    picked, rest = split_per_class(labels, 4, seed=3)
    assert sorted(picked + rest) == list(range(30)) and not set(picked) & set(rest)
    assert np.bincount(np.asarray(labels)[picked]).tolist() == [4, 4, 4]
    assert split_per_class(labels, 4, seed=3) == (picked, rest)
    assert split_per_class(labels, 4, seed=4)[0] != picked
    # Not the first items in file order, which is what the reader's limit_per_class would keep.
    assert picked != sorted(i for c in range(3) for i in range(c, 30, 3)[:4])
    with pytest.raises(ValueError, match="fewer than"):
        split_per_class(labels, 11, seed=0)


def test_study_data_splits_are_disjoint(data):
    ids = lambda samples: {s.image_id for s in samples}  # noqa: E731
    assert len(data.tune) == 6 and len(data.val) == 12 and len(data.pool) == 18
    assert not ids(data.tune) & ids(data.pool) and not ids(data.val) & (ids(data.tune) | ids(data.pool))
    assert len(data.regimes["all"]) == 18 and len(data.regimes["n3"]) == 9
    assert np.bincount([data.pool[i].labels[0] for i in data.regimes["n3"]]).tolist() == [3, 3, 3]
    assert data.description["n_train"] == {"all": 18, "n3": 9}


def test_fair_score_reads_val_at_the_tuning_threshold():
    tune = _curves({30: [10, 80, 80, 20], 50: [50, 10, 0, 0]})
    val = _curves({30: [30, 40, 90, 0], 50: [20, 60, 0, 0]}, {30: [5, 6, 7, 0], 50: [8, 1, 0, 0]}, 70.0)
    fair = fair_scores(tune, val)
    # τ index 1 (first maximiser of 80, 80) at IoU 30, index 0 at IoU 50.
    assert fair["per_iou"] == {"30": 40.0, "50": 20.0} and fair["MaxBoxAccV2"] == 30.0
    assert fair["tau"] == {"30": 0.1, "50": 0.0} and fair["Top1Loc"] == (6 + 8) / 2
    ref = summarize(val)
    assert ref["per_iou"] == {"30": 90.0, "50": 60.0} and ref["MaxBoxAccV2"] == 75.0 and ref["top1"] == 70.0
    assert ref["tau"] == {"30": 0.2, "50": 0.1} and ref["Top1Loc"] == (7 + 8) / 2
    with pytest.raises(ValueError, match="share"):
        fair_scores(tune, _curves({30: [1, 2, 3, 4]}))


def test_combine_merges_rows_and_keeps_the_mixing_rows_mixer():
    rows = {m.name: m for m in SMALL_DATA_METHODS}
    name, overrides = combine(
        [(rows["cam_hires"], "default"), (rows["cutmix"], "default"), (rows["mixup_cam"], "default")]
    )
    assert name == "cam_hires+cutmix+mixup_cam"
    config = merge(BASE_CONFIG, overrides)
    assert config["method"] == "MixUpCAM" and config["mixer"] == {"name": "cutmix", "alpha": 1.0}
    assert config["model"]["backbone_kwargs"] == {"stem_stride": 2, "last_stride": 1, "width": 32}
    name, overrides = combine([(rows["label_smoothing"], "eps0.2"), (rows["l1"], "l1_1e-05")])
    assert name == "label_smoothing=eps0.2+l1=l1_1e-05"
    assert merge(BASE_CONFIG, overrides)["model"] | {} == BASE_CONFIG["model"] | {
        "label_smoothing": 0.2,
        "weight_decay": 0.0,
        "l1": 1e-5,
    }
    with pytest.raises(ValueError, match="distinct groups"):
        combine([(rows["l1"], "l1_1e-05"), (rows["l2"], "l2_0.001")])


def test_combination_reads_only_the_tuning_split():
    rows = {m.name: m for m in SMALL_DATA_METHODS}
    spec = RunSpec("x", "v", "all", 0, {})
    base = [_fake(spec, 50.0, top1=80.0)]
    good_val_bad_tune = _fake(spec, 40.0, top1=90.0)
    good_val_bad_tune["val"]["MaxBoxAccV2"] = good_val_bad_tune["fair"]["MaxBoxAccV2"] = 99.0
    candidates = [
        (rows["cam"], "default", base),
        (rows["cam_hires"], "default", [_fake(spec, 55.0, top1=79.5)]),  # within the top-1 slack
        (rows["label_smoothing"], "eps0.1", [good_val_bad_tune]),
        (rows["mixup"], "default", [_fake(spec, 60.0, top1=70.0)]),  # loses 10 points of top-1
        (rows["cutmix"], "default", [_fake(spec, 52.0)]),
        (rows["fmix"], "default", [_fake(spec, 58.0, top1=81.0)]),
    ]
    excluded: list[str] = []
    chosen = choose_combination(candidates, base, excluded)
    assert [(row.name, v) for row, v in chosen] == [("cam_hires", "default"), ("fmix", "default")]
    assert excluded == [
        "mixup: tuning MaxBoxAccV2 60.00 beats the plain CAM's 50.00, but its tuning top-1 70.00 is more than "
        "1 point below 80.00",
        "cutmix: tuning MaxBoxAccV2 52.00 beats the plain CAM's 50.00, but its tuning top-1 50.00 is more than "
        "1 point below 80.00",
    ]


def test_report_shows_the_median_seconds_and_names_a_single_run(tmp_path):
    # One run that shared the CPU (400 s) does not drag its row's seconds; the verdict counts runs in words.
    results = []
    for seed, seconds in enumerate((100.0, 400.0, 110.0)):
        run = _fake(RunSpec("cam", "default", "all", seed, {}), 50.0)
        run["seconds"] = {**run["seconds"], "total": seconds}
        results.append(run)
    results.append(_fake(RunSpec("cam_hires", "default", "all", 0, {}), 55.0))
    centre = _fake(RunSpec("center_gaussian", "", "any", 0, {}), 45.0)
    write_report(tmp_path, results, {"center_gaussian": centre})
    table = (tmp_path / "results.md").read_text()
    cam = next(ln for ln in table.splitlines() if ln.startswith("| cam |"))
    assert cam.endswith("| 110 |") and "| default | 3 |" in cam
    assert "**cam_hires** (default, minmax normalisation, 1 run):" in table
    seconds = [float(r["seconds_total"]) for r in csv.DictReader((tmp_path / "results.csv").open())]
    assert seconds[:4] == [100.0, 400.0, 110.0, 2.0]


def test_plan_tunes_variants_at_the_first_seed_then_runs_seeds_then_the_combination():
    by_name = {row.name: row for row in SMALL_DATA_METHODS}
    rows = (by_name["cam"], by_name["label_smoothing"], by_name["cam_hires"])
    scores = {"label_smoothing/eps0.1": 30.0, "label_smoothing/eps0.2": 45.0, "cam/default": 40.0}
    done: dict[str, dict] = {}

    def lookup(spec):
        return done.get(spec.key)

    plan = plan_runs(rows, ["all"], [0, 1], lookup)
    assert [s.key for s in plan.specs] == [
        "all/cam/default/seed0",
        "all/label_smoothing/eps0.1/seed0",
        "all/label_smoothing/eps0.2/seed0",
        "all/cam_hires/default/seed0",
        "all/cam/default/seed1",
        "all/cam_hires/default/seed1",
    ]
    assert plan.total == 2 + 3 + 2 + 2  # cam, two variants + one more seed, hires, the combination
    for _ in range(5):
        for spec in plan.specs:
            done.setdefault(spec.key, _fake(spec, scores.get(f"{spec.method}/{spec.variant}", 41.0)))
        plan = plan_runs(rows, ["all"], [0, 1], lookup)
    keys = [s.key for s in plan.specs]
    assert "all/label_smoothing/eps0.2/seed1" in keys and "all/label_smoothing/eps0.1/seed1" not in keys
    assert keys[-2:] == [f"all/best_combo/label_smoothing=eps0.2+cam_hires/seed{s}" for s in (0, 1)]
    assert plan.chosen["all"]["label_smoothing"] == "eps0.2" and len(keys) == plan.total == 9
    combo = plan.specs[-1].config
    assert combo["model"]["label_smoothing"] == 0.2 and combo["model"]["backbone_kwargs"]["last_stride"] == 1
    assert "label_smoothing: eps0.2 chosen on the tuning split" in " ".join(plan.notes["all"])


@pytest.mark.parametrize("row", SMALL_DATA_METHODS, ids=lambda r: r.name)
def test_every_grid_row_builds_and_takes_a_training_step(row, data):
    import torch

    batch = next(iter(data.train_loader("all", 6, 0, (0.5, 1.0))))
    for variant, overrides in row.variants.items():
        config = merge(merge(BASE_CONFIG, SMALL), overrides)
        model = build_model(config, 3, seed=0)
        loss = model.loss(batch)[0] + model.regularization()
        loss.backward()
        assert torch.isfinite(loss), variant
        logits, maps = model.eval().forward_with_cams(batch["image"])
        strides = config["model"]["backbone_kwargs"]
        side = 32 // (2 * 2 * strides.get("layer3_stride", 2) * strides["last_stride"])  # stem 2, layer2 2
        if config["model"].get("mask_stage") == "penultimate":  # BAS's maps from the features before the last stage
            side *= strides["last_stride"]
        assert logits.shape == (6, 3) and maps.shape == (6, 3, side, side)
        assert [type(c).__name__ for c in build_callbacks(config)] == (["EMAWeightAveraging"] if config["ema"] else [])
        if "stage1" in config:  # the pseudo-box row: its model is the stage-2 localizer; stage 1 must train too
            first = build_model(merge(merge(BASE_CONFIG, SMALL), config["stage1"]), 3, seed=0)
            loss = first.loss(batch)[0] + first.regularization()
            loss.backward()
            assert torch.isfinite(loss) and first.eval().forward_with_cams(batch["image"])[1].shape == (6, 3, 8, 8)


@pytest.mark.slow
def test_run_study_trains_resumes_and_reports(tmp_path, data_n3):
    data = data_n3
    calls: list[str] = []

    def counted(spec, data_, settings):
        calls.append(spec.key)
        return train_and_score(spec, data_, settings)

    settings = _settings(tmp_path, limit_train_batches=2)
    study = dict(data=data, settings=settings, methods=TWO_ROWS, train_fn=counted)
    assert run_study(**{**study, "settings": _settings(tmp_path)}, dry_run=True) == 0 and not calls
    assert run_study(**study) == 0
    assert calls == [f"n3/{m}/default/seed{s}" for s in (0, 1) for m in ("cam", "cutmix")]  # seed by seed
    files = sorted((tmp_path / "runs").rglob("*.json"))
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    results = {f.relative_to(tmp_path / "runs").with_suffix("").as_posix(): json.loads(f.read_text()) for f in files}
    assert set(results) == set(calls)
    first = results["n3/cam/default/seed0"]
    assert first["n_train"] == 9 and first["tune"]["n_images"] == 6 and first["val"]["n_images"] == 12
    for part in ("tune", "val", "fair"):
        assert first[part]["MaxBoxAccV2"] == pytest.approx(np.mean(list(first[part]["per_iou"].values())))
    assert all(first["fair"]["per_iou"][k] <= first["val"]["per_iou"][k] for k in ("30", "50", "70"))
    assert first["fair"]["tau"] == first["tune"]["tau"]

    # Resume: nothing is retrained and no result is rewritten; a deleted result is the only run redone.
    calls.clear()
    assert run_study(**study) == 0 and calls == []
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes
    redo = tmp_path / "runs" / "n3/cutmix/default/seed1.json"
    redo.unlink()
    assert run_study(**study) == 0 and calls == ["n3/cutmix/default/seed1"]
    again = json.loads(redo.read_text())  # same seed, same numbers (crops, mixing, shuffling all seeded)
    assert {k: again[k] for k in ("tune", "val", "fair")} == {
        k: results[again["key"]][k] for k in ("tune", "val", "fair")
    }

    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    label_free = {f"{c}{f}" for c in ("mbd", "mbplus", "spectral_residual") for f in ("", "+center")}
    assert len(rows) == 4 + 2 + 6 and {r["method"] for r in rows[4:]} == {"center_gaussian", "all_ones", *label_free}
    row = next(r for r in rows if (r["regime"], r["method"], r["seed"]) == ("n3", "cam", "0"))
    assert float(row["val_fair_MaxBoxAccV2"]) == pytest.approx(first["fair"]["MaxBoxAccV2"], abs=1e-4)
    assert float(row["top1_val"]) == pytest.approx(first["val"]["top1"], abs=1e-4)

    table = (tmp_path / "results.md").read_text()
    for method in ("cam", "cutmix"):
        runs = [results[f"n3/{method}/default/seed{s}"] for s in (0, 1)]
        top1 = np.array([r["val"]["top1"] for r in runs])
        fair = np.array([r["fair"]["MaxBoxAccV2"] for r in runs])
        line = next(ln for ln in table.splitlines() if ln.startswith(f"| {method} |"))
        assert f"| {top1.mean():.2f} ± {top1.std(ddof=1):.2f} |" in line
        assert f"**{fair.mean():.2f} ± {fair.std(ddof=1):.2f}**" in line and "| default | 2 |" in line
    centre = json.loads((tmp_path / "reference" / "center_gaussian.json").read_text())
    assert (
        f"| center_gaussian (reference) | `wsol evaluate --npz` | 1 | — | **{centre['fair']['MaxBoxAccV2']:.2f}**"
        in table
    )
    assert "Best WSOL row on the tuning split" in table
    baseline = json.loads((tmp_path / "reference" / "label_free_baseline.json").read_text())
    assert f"| {baseline['name']} (reference, label-free baseline) |" in table
    assert "Label-free baseline (best tuning MaxBoxAccV2" in table and f"**{baseline['name']}**" in table
    png = (tmp_path / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    # A recipe change is refused instead of mixing two recipes in one table.
    changed = StudySettings(out=tmp_path, seeds=(0,), base={**SMALL, "epochs": 2}, combination=False, progress=False)
    with pytest.raises(ValueError, match="another recipe"):
        run_study(data, changed, TWO_ROWS, dry_run=True)


def test_reference_rows_equal_a_direct_accumulator(tmp_path, data):
    from wsol.evaluation.priors import center_gaussian
    from wsol.metrics import BoxAccumulator
    from wsol.study import reference_rows

    rows = reference_rows(data, tmp_path, cam_curve_interval=0.01)
    acc = BoxAccumulator(0.01, modes=("MaxBoxAccV2",))
    boxes = [b.numpy() for batch in data.eval_loader("val") for b in batch["boxes"]]
    acc.update(np.repeat(center_gaussian(32, 32)[None], len(boxes), 0), boxes)
    assert rows["center_gaussian"]["val"]["MaxBoxAccV2"] == pytest.approx(acc.compute().modes["MaxBoxAccV2"].value)
    # A constant map is normalised to all zeros, which has no contour: the protocol's box is [0, 0, 0, 0].
    assert rows["all_ones"]["val"]["per_iou"] == {"30": 0.0, "50": 0.0, "70": 0.0}
    assert rows["all_ones"]["fair"]["MaxBoxAccV2"] == 0.0
    assert main(["evaluate", "--npz", str(tmp_path / "center_gaussian_val.npz"), "--no-progress"]) == 0


def test_failed_run_is_recorded_skipped_and_retried(tmp_path, data_n3, caplog):
    data = data_n3

    def flaky(spec, data_, settings):
        if spec.key == "n3/cutmix/default/seed1":
            raise RuntimeError("out of memory")
        return _fake(spec, 50.0)

    settings = _settings(tmp_path)
    assert run_study(data, settings, TWO_ROWS, train_fn=flaky) == 1
    error = tmp_path / "runs" / "n3/cutmix/default/seed1.error.txt"
    assert error.read_text() == "RuntimeError: out of memory\n"
    assert "run n3/cutmix/default/seed1 failed: RuntimeError: out of memory" in caplog.text  # logged, not printed
    assert len(list((tmp_path / "runs").rglob("*.json"))) == 3
    assert run_study(data, settings, TWO_ROWS, train_fn=lambda s, d, c: _fake(s, 50.0)) == 0
    assert not error.exists() and len(list((tmp_path / "runs").rglob("*.json"))) == 4


def test_run_seeds_split_a_grid_across_processes(tmp_path, data_n3):
    ls = {"a": {"model": {"label_smoothing": 0.1}}, "b": {"model": {"label_smoothing": 0.2}}}
    rows = (*TWO_ROWS, MethodSpec("ls", "reg", ls))
    calls: list[str] = []

    def fake(spec, data_, settings):
        calls.append(spec.key)
        return _fake(spec, 60.0 if spec.variant == "b" else 50.0)

    # A process given seed 1 alone trains what is decidable for seed 1: not the variant row, whose choice needs
    # seed 0's runs, and says so in one error line instead of exiting as if done; another process on seed 0 then
    # trains those, and seed 1 of the chosen variant follows.
    with pytest.raises(ValueError, match=r"--run-seeds 1: 1 runs of the grid wait .* \(seed 0 must finish first"):
        run_study(data_n3, _settings(tmp_path, run_seeds=(1,)), rows, train_fn=fake)
    assert calls == ["n3/cam/default/seed1", "n3/cutmix/default/seed1"]
    assert run_study(data_n3, _settings(tmp_path, run_seeds=(0,)), rows, train_fn=fake) == 0
    assert calls[2:] == ["n3/cam/default/seed0", "n3/cutmix/default/seed0", "n3/ls/a/seed0", "n3/ls/b/seed0"]
    assert run_study(data_n3, _settings(tmp_path, run_seeds=(1,)), rows, train_fn=fake) == 0
    assert calls[6:] == ["n3/ls/b/seed1"]
    assert run_study(data_n3, _settings(tmp_path), rows, train_fn=fake) == 0 and len(calls) == 7  # all done


def test_a_process_given_a_subset_rewrites_the_whole_folders_report(tmp_path, data, data_n3):
    # One process trains cam in both regimes; another, given cutmix and one regime, must leave a report with
    # every finished run and must reuse the reference rows (they depend on the tuning and val splits only).
    fake = lambda spec, data_, settings: _fake(spec, 50.0)  # noqa: E731
    assert run_study(data, _settings(tmp_path), TWO_ROWS[:1], train_fn=fake) == 0
    reference = sorted((tmp_path / "reference").glob("*.json"))
    scored = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in reference if f.stem != "label_free_baseline"}
    baseline = (tmp_path / "reference" / "label_free_baseline.json").read_bytes()
    assert run_study(data_n3, _settings(tmp_path), TWO_ROWS[1:], train_fn=fake) == 0
    rows = {(r["regime"], r["method"], r["seed"]) for r in csv.DictReader((tmp_path / "results.csv").open())}
    runs = {(g, m, str(s)) for g in ("all", "n3") for m in ("cam",) for s in (0, 1)}
    assert runs | {("n3", "cutmix", "0"), ("n3", "cutmix", "1")} <= rows
    assert ("all", "cutmix", "0") not in rows
    table = (tmp_path / "results.md").read_text()
    assert "## Regime `all`" in table and "## Regime `n3`" in table
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in scored} == scored  # reused, not rescored
    assert (tmp_path / "reference" / "label_free_baseline.json").read_bytes() == baseline


def test_run_seeds_flag(tmp_path) -> None:
    from wsol.commands.study import parse_run_seeds

    assert parse_run_seeds(None, 3) == () and parse_run_seeds("2, 1,2", 3) == (2, 1)
    with pytest.raises(ValueError, match="--run-seeds: seed 3 is outside 0..2"):
        parse_run_seeds("3", 3)
    with pytest.raises(ValueError, match="--run-seeds: 'x' is not an integer"):
        parse_run_seeds("1,x", 3)


def test_cli_dry_run_and_bad_input(tmp_path, capsys):
    args = ["study", "small-data", "--data", "synthetic", "--data-options", json.dumps(TINY), "--image-size", "32"]
    args += ["--tune-per-class", "2", "--regimes", "all", "--out", str(tmp_path), "--dry-run"]
    assert main(args + ["--methods", "cam,ema", "--seeds", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "todo  all/cam/default/seed0",
        "todo  all/ema/decay0.99/seed0",
        "todo  all/ema/decay0.998/seed0",
        "todo  all/cam/default/seed1",
        "4 runs decidable now, 7 in the whole grid",
    ]
    assert main(args + ["--methods", "cam,nope"]) == 2
    assert "unknown --methods ['nope']" in capsys.readouterr().err
    assert main(args + ["--regimes", "all,-3"]) == 2
    assert "--regimes items must be" in capsys.readouterr().err


@pytest.mark.parametrize("precision", [None, "32-true"])
def test_runs_train_with_the_recipes_precision_and_channels_last_weights(tmp_path, data_n3, monkeypatch, precision):
    import pytorch_lightning as pl
    import torch

    seen: dict = {}

    class Recording(pl.Trainer):
        def __init__(self, **kwargs):
            seen["precision"] = kwargs["precision"]
            super().__init__(**kwargs)

        def fit(self, model, **kwargs):
            conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
            seen["channels_last"] = conv.weight.is_contiguous(memory_format=torch.channels_last)
            return super().fit(model, **kwargs)

    monkeypatch.setattr(pl, "Trainer", Recording)
    config = merge(merge(BASE_CONFIG, SMALL), {"precision": precision} if precision else {})
    spec = RunSpec("cam", "default", "n3", 0, config)
    result = train_and_score(spec, data_n3, _settings(tmp_path, limit_train_batches=1))
    assert seen == {"precision": precision or "bf16-mixed", "channels_last": True}
    assert result["config"]["precision"] == seen["precision"] and 0 <= result["val"]["top1"] <= 100


def _with_norms(run, tune_by_norm, val_fair_by_norm):
    # A run scored under several normalisations: tuning MaxBoxAccV2 and val fair MaxBoxAccV2 per name.
    norms = {}
    for name, tune_v2 in tune_by_norm.items():
        part = {k: dict(run[k]) for k in ("tune", "val", "fair")}
        part["tune"]["MaxBoxAccV2"] = tune_v2
        part["fair"]["MaxBoxAccV2"] = val_fair_by_norm[name]
        norms[name] = part
    return {**run, **norms["minmax"], "norms": norms}


def test_report_chooses_the_normalisation_on_tune_and_never_names_the_box_supervised_row(tmp_path):
    from wsol.study.report import choose_normalization

    results = []
    for seed in (0, 1):
        cam = _fake(RunSpec("cam", "default", "all", seed, {}), 50.0)
        # pas wins on tune (mean 56) though ivr0.6 would win on val: val is never read to choose.
        results.append(
            _with_norms(
                cam, {"minmax": 50.0, "pas": 55.0 + seed * 2, "ivr0.6": 54.0}, {"minmax": 40, "pas": 42, "ivr0.6": 60}
            )
        )
        fsl = _fake(RunSpec("fsl", "default", "all", seed, {}), 90.0)
        results.append({**fsl, "supervision": "boxes"})
    assert choose_normalization(results[0::2]) == "pas"
    assert choose_normalization([results[0], _fake(RunSpec("cam", "default", "all", 2, {}), 70.0)]) == "minmax"
    centre = _fake(RunSpec("center_gaussian", "", "any", 0, {}), 45.0)
    write_report(tmp_path, results, {"center_gaussian": centre})
    table = (tmp_path / "results.md").read_text()
    assert (
        "Best WSOL row on the tuning split: **cam** (default, pas normalisation, 2 runs): val MaxBoxAccV2 42.00"
        in table
    )
    line = next(ln for ln in table.splitlines() if ln.startswith("| cam |"))
    assert "| pas | **42.00 ± 0.00** |" in line
    assert any(ln.startswith("| fsl (reference, boxes) |") for ln in table.splitlines())
    norm_line = next(ln for ln in table.splitlines() if ln.startswith("| cam | 40.00"))
    assert "**42.00 ± 0.00** | 60.00 ± 0.00 (p 0.6) | +2.00 |" in norm_line
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert rows[0]["val_fair_MaxBoxAccV2_pas"] == "42" and rows[1]["supervision"] == "boxes"


def test_saved_maps_rescore_to_the_runs_numbers(tmp_path, data_n3):
    from wsol.study.scoring import NORM_VARIANTS, collect_maps, normalization_scores, read_maps, write_maps

    config = merge(merge(BASE_CONFIG, SMALL), {"precision": "32-true"})
    model = build_model(config, 3, seed=0)
    tune, val = collect_maps(model, data_n3.eval_loader("tune")), collect_maps(model, data_n3.eval_loader("val"))
    scores = normalization_scores(tune, val, 0.01)
    assert set(scores) == set(NORM_VARIANTS) and tune.maps.shape == (6, 2, 2) and tune.maps.dtype == np.float32
    write_maps(tmp_path / "run.maps.npz", {"tune": tune, "val": val})
    again = read_maps(tmp_path / "run.maps.npz")
    assert normalization_scores(again["tune"], again["val"], 0.01) == scores
    # The min-max entry is the protocol's number that score_model gives.
    from wsol.study.scoring import score_model

    assert scores["minmax"]["tune"] == summarize(score_model(model, data_n3.eval_loader("tune"), 0.01))


def test_tune_split_loader_and_refresh(tmp_path, data_n3):
    loader = data_n3.train_loader("n3", 4, 0, (0.5, 1.0), split="tune")
    assert len(loader.dataset) == len(data_n3.tune) == 6
    with pytest.raises(ValueError, match="split must be"):
        data_n3.train_loader("n3", 4, 0, (0.5, 1.0), split="val")
    calls: list[str] = []

    def fake_train(spec, data_, settings):
        calls.append(spec.key)
        return _fake(spec, 50.0)  # no "norms": a result from before the normalisation scores

    one = (TWO_ROWS[0],)
    settings = StudySettings(out=tmp_path, seeds=(0,), base=SMALL, combination=False, progress=False)
    assert run_study(data_n3, settings, one, train_fn=fake_train) == 0 and calls == ["n3/cam/default/seed0"]
    assert run_study(data_n3, settings, one, train_fn=fake_train) == 0 and len(calls) == 1
    refresh = StudySettings(out=tmp_path, seeds=(0,), base=SMALL, combination=False, progress=False, refresh=("cam",))
    assert run_study(data_n3, refresh, one, train_fn=fake_train) == 0 and len(calls) == 2


def test_an_undecided_combination_keeps_its_earlier_runs_in_the_report(tmp_path):
    from wsol.study.grid import COMBO
    from wsol.study.planner import Plan
    from wsol.study.runner import _earlier_combinations

    run = _fake(RunSpec(COMBO, "cam_hires+l1=l1_1e-05", "all", 0, {}), 55.0)
    path = tmp_path / "all" / COMBO / run["variant"] / "seed0.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(run))
    undecided = Plan([], 0, {"all": []}, {"all": {"cam": "default"}})
    found = _earlier_combinations(tmp_path, undecided, ["all"], combination=True)
    assert [r["variant"] for r in found] == ["cam_hires+l1=l1_1e-05"]
    assert undecided.chosen["all"][COMBO] == "cam_hires+l1=l1_1e-05"
    assert "decided before the newest rows existed" in undecided.notes["all"][0]
    decided = Plan([], 0, {"all": []}, {"all": {COMBO: "other"}})
    assert _earlier_combinations(tmp_path, decided, ["all"], combination=True) == []
    assert _earlier_combinations(tmp_path, undecided, ["all"], combination=False) == []


def test_a_run_missing_normalisations_is_rescored_from_its_maps(tmp_path, data_n3):
    from wsol.study.runner import _rescored
    from wsol.study.scoring import NORM_VARIANTS, collect_maps, normalization_scores, write_maps

    config = merge(merge(BASE_CONFIG, SMALL), {"precision": "32-true"})
    model = build_model(config, 3, seed=0)
    tune, val = collect_maps(model, data_n3.eval_loader("tune")), collect_maps(model, data_n3.eval_loader("val"))
    full = normalization_scores(tune, val, 0.01)
    path = tmp_path / "seed0.json"
    write_maps(tmp_path / "seed0.maps.npz", {"tune": tune, "val": val})
    old = {"cam_curve_interval": 0.01, "norms": {k: v for k, v in full.items() if k != "ivr0.1"}}
    path.write_text(json.dumps(old))
    again = _rescored(path, old, 0.01)
    assert set(again["norms"]) == set(NORM_VARIANTS) and again["norms"] == json.loads(json.dumps(full))
    assert json.loads(path.read_text())["norms"]["ivr0.1"] == again["norms"]["ivr0.1"]
    # Without its maps a run stays as it was.
    (tmp_path / "seed0.maps.npz").unlink()
    assert _rescored(path, old, 0.01) is old


# ---------------------------------------------------------------------------------------- the pseudo-box row
PSOL = next(row for row in SMALL_DATA_METHODS if row.name == "psol")


class _Untouchable:
    """Stands in for a training image's GT boxes or mask: any use of it fails the test."""

    def __getattribute__(self, name):
        raise AssertionError(f"a GT annotation of a training image was read (.{name})")

    def _fail(self, *args, **kwargs):
        raise AssertionError("a GT annotation of a training image was read")

    __len__ = __iter__ = __getitem__ = __array__ = __bool__ = __float__ = __index__ = _fail


def _without_pool_annotations(data):
    import copy
    import dataclasses

    pool = []
    for sample in data.pool:
        sample = copy.copy(sample)  # the copy shares nothing that is rewritten below
        sample.boxes, sample.mask = _Untouchable(), _Untouchable()
        pool.append(sample)
    return dataclasses.replace(data, pool=pool)


def test_largest_component_box_on_a_hand_made_map():
    from wsol.metrics import boxes_from_scoremap
    from wsol.study.pseudo import largest_component_box

    scoremap = np.zeros((8, 8))
    scoremap[2:5, 3:6] = 1.0  # rows 2-4, columns 3-5
    assert largest_component_box(scoremap, 0.5).tolist() == [3, 2, 5, 4]
    # The protocol's own box of that mask is one pixel too large on the right and bottom (+w convention).
    assert boxes_from_scoremap(scoremap, [0.5], multi_contour=False)[0].tolist() == [[3, 2, 6, 5]]
    scoremap[0, 7] = 1.0  # a one-pixel component: not the largest
    scoremap[1, 3] = 0.5  # q = 127, not above int(0.5 * 255) = 127: outside the mask at τ 0.5
    scoremap[5, 6] = 0.6  # q = 153: touches (4, 5) diagonally, so joins the block at τ 0.5, not at τ 0.7
    assert largest_component_box(scoremap, 0.5).tolist() == [3, 2, 6, 5]
    assert largest_component_box(scoremap, 0.7).tolist() == [3, 2, 5, 4]
    assert largest_component_box(scoremap, 0.49).tolist() == [3, 1, 6, 5]  # 127 > int(0.49 * 255) = 124
    assert largest_component_box(np.zeros((8, 8)), 0.5) is None  # a constant map has an empty mask
    with pytest.raises(ValueError, match="tau"):
        largest_component_box(scoremap, 1.0)
    with pytest.raises(ValueError, match="scoremap"):
        largest_component_box(scoremap * 2, 0.5)


def test_tau_is_the_tuning_maximiser_at_iou_50_and_boxes_follow_each_image():
    from wsol.study.pseudo import choose_tau, pseudo_boxes
    from wsol.study.scoring import RawMaps

    curves = _curves({30: [90, 10, 10, 10], 50: [10, 40, 40, 20], 70: [0, 0, 0, 30]})
    assert choose_tau(curves) == 0.1  # the first maximiser at IoU 50; IoU 30 and 70 are not read
    with pytest.raises(ValueError, match="iou"):
        choose_tau(curves, 60)
    block = np.zeros((8, 8), np.float32)
    block[2:5, 3:6] = 5.0  # raw scores of any scale: min-max brings the block to 1 and the rest to 0
    coarse = np.array([[0, 0], [0, 1]], np.float32)
    maps = np.stack([block, np.full((8, 8), 3.0, np.float32), np.kron(coarse, np.ones((4, 4), np.float32))])
    raw = RawMaps(maps, np.ones(3, bool), [_Untouchable()] * 3, 8)  # the maps' GT boxes are not read
    boxes, n_whole = pseudo_boxes(raw, [(8, 8), (8, 8), (16, 8)], 0.5)
    assert boxes[0].tolist() == [[3, 2, 5, 4]]
    assert boxes[1].tolist() == [[0, 0, 7, 7]] and n_whole == 1  # a constant map: the whole image
    # Upsampled to the 16 x 8 image itself: the bright bottom-right quadrant stays in the bottom-right.
    x0, y0, x1, y1 = boxes[2][0].tolist()
    assert x0 >= 8 and y0 >= 4 and (x1, y1) == (15, 7)
    with pytest.raises(ValueError, match="sizes"):
        pseudo_boxes(raw, [(8, 8)], 0.5)


def test_label_only_and_pseudo_splits_keep_the_regimes_images_and_crops(data_n3):
    import torch

    plain = next(iter(data_n3.train_loader("n3", 4, 0, (0.5, 1.0))))
    labels = next(iter(data_n3.train_loader("n3", 4, 0, (0.5, 1.0), split="labels")))
    # The same images, order and crops as the regime's loader, without its GT boxes.
    assert torch.equal(plain["image"], labels["image"]) and plain["image_id"] == labels["image_id"]
    assert all(len(b) == 0 for b in labels["boxes"]) and any(len(b) for b in plain["boxes"])
    whole = [np.array([[0, 0, 31, 31]])] * len(data_n3.regimes["n3"])
    pseudo = next(iter(data_n3.train_loader("n3", 4, 0, (0.5, 1.0), split="pseudo", boxes=whole)))
    assert torch.equal(plain["image"], pseudo["image"])
    # A box over the whole image still covers the whole crop after cropping and flipping.
    assert [b.tolist() for b in pseudo["boxes"]] == [[[0.0, 0.0, 31.0, 31.0]]] * 4
    with pytest.raises(ValueError, match="boxes must be given"):
        data_n3.train_loader("n3", 4, 0, (0.5, 1.0), split="pseudo")
    with pytest.raises(ValueError, match="one entry per image"):
        data_n3.train_loader("n3", 4, 0, (0.5, 1.0), split="pseudo", boxes=whole[:2])
    with pytest.raises(ValueError, match="split must be"):
        data_n3.eval_loader("train")


def test_psol_row_trains_both_stages_without_reading_a_training_box(tmp_path, data_n3, monkeypatch):
    import wsol.study.pseudo as pseudo

    blind = _without_pool_annotations(data_n3)
    with pytest.raises(AssertionError, match="GT annotation"):  # the sentinel does catch a read
        next(iter(blind.train_loader("n3", 4, 0, (0.5, 1.0))))
    made: dict = {}
    make = pseudo.pseudo_boxes

    def spy(raw, sizes, tau):
        made["raw"], made["tau"] = raw, tau
        made["boxes"] = make(raw, sizes, tau)[0]
        return made["boxes"], 0

    loaders: list = []
    original = type(blind).train_loader

    def recording(self, regime, batch_size, seed, scale, split="regime", boxes=None):
        loaders.append((split, boxes))
        return original(self, regime, batch_size, seed, scale, split, boxes)

    import wsol.study.runner as runner

    collected: list = []
    collect = runner.collect_maps

    def collecting(model, loader):
        collected.append(collect(model, loader))
        return collected[-1]

    monkeypatch.setattr("wsol.study.pseudo.pseudo_boxes", spy)
    monkeypatch.setattr(runner, "collect_maps", collecting)
    monkeypatch.setattr(type(blind), "train_loader", recording)
    settings = _settings(tmp_path, limit_train_batches=2)
    config = merge(merge(BASE_CONFIG, SMALL), PSOL.variants["default"])
    result = train_and_score(RunSpec("psol", "default", "n3", 0, config), blind, settings)

    # Stage 1 trains on labels only; stage 2 on exactly the boxes made from stage 1's maps at its τ.
    assert [split for split, _ in loaders] == ["labels", "pseudo"] and loaders[1][1] is made["boxes"]
    assert made["raw"].maps.shape == (9, 8, 8)  # stage 1 is the 16x16-map recipe: 8x8 maps at 32 px
    stage1 = result["stage1"]
    assert stage1["tau"] == made["tau"] and stage1["pseudo_boxes"]["n"] == 9
    assert stage1["config"] == merge(merge(BASE_CONFIG, SMALL), PSOL.variants["default"]["stage1"])
    assert result["config"]["method"] == "FSL" and result["supervision"] == "labels" and result["n_train"] == 9
    assert result["_raw_maps"]["tune"].maps.shape == (6, 2, 2)  # stage 2 keeps the base recipe's maps
    seconds = result["seconds"]
    # Both stages are timed inside the run's total (scoring comes on top); timings are never compared exactly.
    assert seconds["stage1"] == stage1["seconds"]["total"] and seconds["stage1"] > 0 and seconds["stage2"] > 0
    assert seconds["stage1"] + seconds["stage2"] <= seconds["total"] + 1e-6

    # Stage 1 is the run its recipe would be: same seed, same batches and crops, so the same weights and maps
    # (trained again here: the model store, which would load stage 1's weights, is off).
    afresh = _settings(tmp_path, limit_train_batches=2, keep_models=False)
    hires = train_and_score(RunSpec("cam_hires16", "default", "n3", 0, stage1["config"]), data_n3, afresh)
    assert len(collected) == 2 + 2 + 2 and collected[1] is made["raw"]  # stage-1 tune and pool, stage 2, hires
    assert np.array_equal(collected[0].maps, hires["_raw_maps"]["tune"].maps) and stage1["tune"] == hires["tune"]
    assert stage1["tau"] == float(hires["tune"]["tau"]["50"])


def test_psol2_self_trains_on_the_first_localizers_boxes(tmp_path, data_n3, monkeypatch):
    blind = _without_pool_annotations(data_n3)
    loaders: list = []
    original = type(blind).train_loader

    def recording(self, regime, batch_size, seed, scale, split="regime", boxes=None):
        loaders.append((split, boxes))
        return original(self, regime, batch_size, seed, scale, split, boxes)

    monkeypatch.setattr(type(blind), "train_loader", recording)
    settings = _settings(tmp_path, limit_train_batches=2)
    row = next(r for r in SMALL_DATA_METHODS if r.name == "psol2")
    config = merge(merge(BASE_CONFIG, SMALL), row.variants["default"])
    result = train_and_score(RunSpec("psol2", "default", "n3", 0, config), blind, settings)
    # Stage 1 on labels, then two localizers: the second learns from boxes made by the first, not stage 1's.
    assert [split for split, _ in loaders] == ["labels", "pseudo", "pseudo"]
    assert loaders[2][1] is not loaders[1][1] and len(loaders[2][1]) == 9
    (relabel,) = result["rounds"]
    assert relabel["pseudo_boxes"]["n"] == 9 and 0 <= relabel["tau"] < 1 and "MaxBoxAccV2" in relabel["tune"]
    assert result["seconds"]["stage1"] + result["seconds"]["stage2"] <= result["seconds"]["total"] + 1e-6
    with pytest.raises(ValueError, match="rounds must be 1, or more with train_split 'pseudo'"):
        train_and_score(RunSpec("cam", "default", "n3", 0, {**config, "train_split": "regime"}), blind, settings)


def test_norm_table_counts_the_runs_that_have_the_scores(tmp_path):
    old = _fake(RunSpec("cam", "default", "all", 0, {}), 50.0)
    new = _with_norms(
        _fake(RunSpec("cam", "default", "all", 1, {}), 50.0),
        {"minmax": 50.0, "max": 40.0, "pas": 52.0, "ivr0.3": 49.0},
        {"minmax": 41, "max": 30, "pas": 43, "ivr0.3": 44},
    )
    centre = _fake(RunSpec("center_gaussian", "", "any", 0, {}), 45.0)
    write_report(tmp_path, [old, new], {"center_gaussian": centre})
    table = (tmp_path / "results.md").read_text()
    line = next(ln for ln in table.splitlines() if ln.startswith("| cam (1 of 2 runs) |"))
    assert line == "| cam (1 of 2 runs) | 41.00 | 30.00 | **43.00** | 44.00 (p 0.3) | +2.00 |"
    # The main table keeps min-max for the row: not every run has the other scores.
    assert "| minmax | **" in next(ln for ln in table.splitlines() if ln.startswith("| cam |"))


class _PoolMaps(torch.nn.Module):
    """Maps = the image's channel mean average-pooled to 4x4 (flip-equivariant); logits = channel means."""

    device = torch.device("cpu")

    def forward(self, x):
        return x.mean(dim=(2, 3))

    def cams(self, x, labels):
        return torch.nn.functional.adaptive_avg_pool2d(x.mean(dim=1, keepdim=True), 4)[:, 0]


def test_tta_maps_flip_back_and_average_over_scales(data_n3):
    from wsol.study.scoring import collect_maps, collect_maps_tta

    model = _PoolMaps()
    plain = collect_maps(model, data_n3.eval_loader("val"))
    # One scale: the flipped view's map, flipped back, is the map itself, so the average is the plain map.
    same = collect_maps_tta(model, data_n3.eval_loader("val"), scales=(1.0,))
    np.testing.assert_allclose(same.maps, plain.maps, atol=1e-6)
    assert same.size == plain.size and np.array_equal(same.hits, plain.hits)
    # Two scales: the mean of the scale-1 map and the 2x view's 4x4 map resized (both are block means here).
    batch = next(iter(data_n3.eval_loader("val")))
    two = collect_maps_tta(model, data_n3.eval_loader("val"), scales=(1.0, 2.0))
    big = torch.nn.functional.interpolate(batch["image"], scale_factor=2.0, mode="bilinear", align_corners=False)
    want = (model.cams(batch["image"], None) + model.cams(big, None)) / 2
    np.testing.assert_allclose(two.maps[: len(want)], want.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="scales is empty"):
        collect_maps_tta(model, data_n3.eval_loader("val"), scales=())


def test_fsl_all_is_the_box_supervised_ceiling_on_the_regimes_own_boxes(tmp_path, data_n3, monkeypatch):
    row = next(r for r in SMALL_DATA_METHODS if r.name == "fsl_all")
    assert row.group is None  # never combined with a WSOL row
    seen: list = []
    original = type(data_n3).train_loader

    def recording(self, regime, batch_size, seed, scale, split="regime", boxes=None):
        loader = original(self, regime, batch_size, seed, scale, split, boxes)
        seen.append((split, [s.boxes for s in loader.dataset.samples]))
        return loader

    monkeypatch.setattr(type(data_n3), "train_loader", recording)
    config = merge(merge(BASE_CONFIG, SMALL), row.variants["default"])
    result = train_and_score(RunSpec("fsl_all", "default", "n3", 0, config), data_n3, _settings(tmp_path))
    # It reads the GT box of every image of the regime (9 here), not the tuning split's.
    assert [split for split, _ in seen] == ["regime"]
    want = [data_n3.pool[i].boxes for i in data_n3.regimes["n3"]]
    assert len(seen[0][1]) == 9 and all(np.array_equal(a, b) for a, b in zip(seen[0][1], want, strict=True))
    assert result["supervision"] == "boxes" and result["n_train"] == 9


def test_psol_fused_boxes_the_training_images_on_the_fused_map_chosen_on_tune(tmp_path, data_n3, monkeypatch):
    import wsol.study.pseudo as pseudo
    from wsol.saliency import cue_maps
    from wsol.study.fusion import class_scoremaps, fuse_class_map
    from wsol.study.label_free import eval_images

    blind = _without_pool_annotations(data_n3)
    made: dict = {}
    make = pseudo.boxes_from_scoremaps

    def spy(scoremaps, sizes, tau):
        made["maps"], made["tau"] = list(scoremaps), tau
        made["boxes"] = make(made["maps"], sizes, tau)
        return made["boxes"]

    import wsol.study.runner as runner

    collected: list = []
    collect = runner.collect_maps

    def collecting(model, loader):
        collected.append(collect(model, loader))
        return collected[-1]

    monkeypatch.setattr(pseudo, "boxes_from_scoremaps", spy)
    monkeypatch.setattr(runner, "collect_maps", collecting)
    row = next(r for r in SMALL_DATA_METHODS if r.name == "psol_fused")
    config = merge(merge(BASE_CONFIG, SMALL), row.variants["default"])
    result = train_and_score(RunSpec("psol_fused", "default", "n3", 0, config), blind, _settings(tmp_path))
    stage1 = result["stage1"]
    fusion = stage1["fusion"]
    assert fusion["cue"] == "mbplus" and fusion["class_map_norm"] in ("minmax", "max")
    assert sum(fusion["weights"].values()) == pytest.approx(1.0) and fusion["weights"]["class_map"] >= 0.1
    # The boxes come from the fused maps (9 training images of n3), at the τ chosen on the fused tuning maps, and
    # no training image's GT box was read (the blind pool raises on any read).
    assert len(made["maps"]) == 9 and made["tau"] == stage1["tau"] and stage1["pseudo_boxes"]["n"] == 9
    # The boxed maps are the weighted sum the record names, recomputed here from stage 1's maps of the training
    # images (its second collection: tuning split first, then the regime).
    from wsol.evaluation.priors import center_gaussian

    cue = cue_maps("mbplus", eval_images(blind.regime_samples("n3"), blind.image_size))
    weights = tuple(fusion["weights"][k] for k in ("class_map", "cue", "prior"))
    prior = center_gaussian(blind.image_size, blind.image_size)
    want = fuse_class_map(class_scoremaps(collected[1], fusion["class_map_norm"]), cue, prior, weights)
    np.testing.assert_allclose(np.stack(made["maps"]), want, atol=1e-9)
    assert result["supervision"] == "labels" and (tmp_path / "reference" / "saliency_tune.npz").is_file()
