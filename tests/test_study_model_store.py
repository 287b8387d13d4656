"""The study's model store: a PSOL-style stage 1 and the cam_hires16 run of the same seed are trained once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import wsol.study.runner as runner
from wsol.study import BASE_CONFIG, SMALL_DATA_METHODS, RunSpec, StudySettings, load_study_data, merge, train_and_score
from wsol.study.model_store import ModelStore, label_only, model_key

TINY = {"train_per_class": 8, "val_per_class": 4, "image_size": 32, "num_classes": 3, "clutter": 2}
SMALL = {"epochs": 1, "batch_size": 8, "model": {"backbone_kwargs": {"width": 8}}}
ROWS = {row.name: row for row in SMALL_DATA_METHODS}


@pytest.fixture(scope="module")
def data_n3():
    return load_study_data("synthetic", None, 32, 2, {"n3": 3}, 0, TINY, TINY)


def _settings(out, **kw):
    return StudySettings(
        out=out, seeds=(0,), base=SMALL, combination=False, cam_curve_interval=0.01, progress=False, **kw
    )


def _config(row: str) -> dict:
    return merge(merge(BASE_CONFIG, SMALL), ROWS[row].variants["default"])


def test_only_label_only_recipes_are_kept_and_the_key_names_what_decides_the_weights():
    assert label_only({}) and label_only({"train_split": "labels"})
    assert not label_only({"train_split": "tune"}) and not label_only({"train_split": "pseudo"})
    assert not label_only({"train_split": "regime", "supervision": "boxes"})  # the ceiling reads GT boxes
    data = {"dataset": "synthetic", "split_seed": 0}
    key = model_key({"epochs": 1}, "all", 0, data, None, "cpu")
    assert key == model_key({"epochs": 1, "train_split": "labels"}, "all", 0, data, None, "cpu")
    others = [
        model_key({"epochs": 2}, "all", 0, data, None, "cpu"),
        model_key({"epochs": 1}, "n300", 0, data, None, "cpu"),
        model_key({"epochs": 1}, "all", 1, data, None, "cpu"),
        model_key({"epochs": 1}, "all", 0, {**data, "split_seed": 1}, None, "cpu"),
        model_key({"epochs": 1}, "all", 0, data, 2, "cpu"),
        model_key({"epochs": 1}, "all", 0, data, None, "gpu"),
    ]
    assert len({key, *others}) == 7
    # Only this regime's entries of the description count: a study run with fewer regimes finds the same model.
    described = {**data, "regimes": {"all": None, "n300": 300}, "n_train": {"all": 4500, "n300": 3000}}
    fewer = {**data, "regimes": {"all": None}, "n_train": {"all": 4500}}
    assert model_key({}, "all", 0, described, None, "cpu") == model_key({}, "all", 0, fewer, None, "cpu")
    assert model_key({}, "all", 0, described, None, "cpu") != model_key({}, "n300", 0, described, None, "cpu")


def test_store_round_trip_and_bad_files(tmp_path):
    store = ModelStore.of(tmp_path)
    model = torch.nn.Linear(3, 2)
    assert store.load("abc123", model) is None
    store.save("abc123", model, {"trained_by": "all/cam/default/seed0", "seconds": {"train": 5.0}})
    other = torch.nn.Linear(3, 2)
    record = store.load("abc123", other)
    assert record["trained_by"] == "all/cam/default/seed0" and record["key"] == "abc123"
    assert torch.equal(other.weight, model.weight) and torch.equal(other.bias, model.bias)
    with pytest.raises(ValueError, match=r"abc123\.pt does not fit"):
        store.load("abc123", torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="alphanumeric"):
        store.load("../escape", model)
    meta = tmp_path / "models" / "abc123.json"
    meta.write_text(json.dumps({"key": "other"}))
    with pytest.raises(ValueError, match="records key 'other'"):
        store.load("abc123", model)
    # Weights without their record (a run killed between the two writes) are not trusted: trained again.
    meta.unlink()
    assert store.load("abc123", model) is None


def test_stage1_is_trained_once_and_the_hires_run_loads_it(tmp_path, data_n3, monkeypatch):
    settings = _settings(tmp_path, limit_train_batches=1)
    fused = train_and_score(RunSpec("psol_fused", "default", "n3", 0, _config("psol_fused")), data_n3, settings)
    stored = sorted(p.suffix for p in (tmp_path / "models").iterdir())
    assert stored == [".json", ".pt"]  # stage 1 only: the box-trained localizer is never kept

    fits: list = []
    fit = runner._fit
    monkeypatch.setattr(runner, "_fit", lambda *a, **k: fits.append(a) or fit(*a, **k))
    hires = train_and_score(RunSpec("cam_hires16", "default", "n3", 0, _config("cam_hires16")), data_n3, settings)
    assert fits == []  # loaded, not trained
    assert hires["reused_model"]["trained_by"] == "n3/psol_fused/default/seed0"
    assert "fusion" in fused["stage1"] and fused["stage1"]["seconds"]["total"] == fused["stage1"]["seconds"]["wall"]
    # Timed as the run that trained it: the stored training seconds count, its own wall time is kept apart.
    (record,) = (tmp_path / "models").glob("*.json")
    assert hires["seconds"]["train"] >= json.loads(record.read_text())["seconds"]["train"] - 1e-6
    assert hires["seconds"]["wall"] < hires["seconds"]["total"]

    # The same maps as the hires run trained afresh (the store off); and psol's stage 1 loads the same model.
    afresh = train_and_score(
        RunSpec("cam_hires16", "default", "n3", 0, _config("cam_hires16")),
        data_n3,
        _settings(tmp_path / "afresh", limit_train_batches=1, keep_models=False),
    )
    assert np.array_equal(hires["_raw_maps"]["tune"].maps, afresh["_raw_maps"]["tune"].maps)
    assert not (tmp_path / "afresh" / "models").exists()
    n_fits = len(fits)
    psol = train_and_score(RunSpec("psol", "default", "n3", 0, _config("psol")), data_n3, settings)
    assert len(fits) == n_fits + 1  # the localizer; stage 1 is loaded
    assert psol["stage1"]["reused_model"]["trained_by"] == "n3/psol_fused/default/seed0"
    assert psol["stage1"]["tune"] == afresh["tune"]
    assert (
        psol["seconds"]["wall"] < psol["seconds"]["total"]
        and psol["seconds"]["stage1"] > psol["stage1"]["seconds"]["wall"]
    )

    # Another seed, or a recipe that no stage 1 shares (the plain CAM), is trained and not kept.
    train_and_score(RunSpec("cam", "default", "n3", 1, _config("cam")), data_n3, settings)
    assert len(fits) == n_fits + 2 and len(list((tmp_path / "models").iterdir())) == 2
