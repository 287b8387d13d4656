"""Label-free saliency cues, their fusion with the centre prior, the class-map fusion and their caches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wsol.saliency import cue_maps, get_cue, list_cues
from wsol.saliency.backgroundness import backgroundness, border_strips
from wsol.saliency.color import minmax
from wsol.saliency.mbd import mbd, mbd_channel
from wsol.saliency.prior_fusion import PRIOR_FUSIONS, fuse_with_prior
from wsol.saliency.spectral import spectral_residual
from wsol.study.scoring import RawMaps, score_scoremaps, summarize


def test_mbd_of_a_bright_square_is_the_intensity_step_and_zero_outside():
    image = np.zeros((8, 8))
    image[2:6, 2:6] = 3.0
    # Every path from the square to the border climbs from 0 to 3: barrier 3. Outside, a flat path: barrier 0.
    expected = np.zeros((8, 8))
    expected[2:6, 2:6] = 3.0
    np.testing.assert_array_equal(mbd_channel(image), expected)


def test_mbd_backward_scan_reaches_a_corridor_open_only_downwards():
    image = np.ones((8, 8))
    image[3:, 4] = 0.0  # a dark corridor from row 3 down to the bottom border
    # A forward scan sees only the bright pixels above and to the left (barrier 1); the backward scan finds the
    # flat path down the corridor (barrier 0).
    assert mbd_channel(image, passes=1)[3, 4] == 1.0
    assert mbd_channel(image, passes=2)[3, 4] == 0.0
    assert mbd_channel(image, passes=3)[1:-1, 1:-1].max() == 0.0  # all bright pixels reach the bright border


def test_mbd_of_a_grey_image_sums_the_lab_channels():
    image = np.zeros((10, 10, 3), np.uint8)
    image[3:7, 3:7] = 255  # white on black: L steps by 100, a and b stay 0
    saliency = mbd(image, blur_sigma=0)
    assert saliency[5, 5] == pytest.approx(100.0, abs=1e-3)
    assert saliency[1, 1] == 0.0 and saliency.argmax() in {r * 10 + c for r in range(3, 7) for c in range(3, 7)}


def _two_colour(object_rows: slice) -> np.ndarray:
    image = np.zeros((30, 30, 3), np.uint8)
    image[:] = (20, 200, 30)
    image[object_rows, 10:20] = (220, 30, 40)
    return image


def test_backgroundness_of_a_two_colour_image():
    assert [tuple((s.start, s.stop) for s in strip) for strip in border_strips(30, 30)] == [
        ((0, 3), (None, None)),
        ((27, 30), (None, None)),
        ((None, None), (0, 3)),
        ((None, None), (27, 30)),
    ]
    # Object away from the border: each strip is pure background, so each normalised distance is 1 on the object
    # and 0 elsewhere: sum 4 minus largest 1 = 3 on the object, 0 on the background.
    centred = backgroundness(_two_colour(slice(10, 20)), blur_sigma=0)
    assert np.allclose(centred[10:20, 10:20], 3.0) and np.allclose(np.delete(centred, range(10, 20), axis=1), 0.0)
    # Object touching the top strip: that strip's mean moves towards the object, but its distance is dropped as
    # the largest on the background (0 + 0 + 0 + d - d = 0); the object, farther from the top mean than the
    # background is, still gets 1 from the top strip: 3.
    touching = backgroundness(_two_colour(slice(0, 20)), blur_sigma=0)
    assert np.allclose(touching[0:20, 10:20], 3.0) and np.allclose(touching[:, :10], 0.0)
    assert np.allclose(touching[20:, :], 0.0)


def test_spectral_residual_is_flat_on_a_uniform_image():
    assert np.ptp(spectral_residual(np.full((64, 64, 3), 120, np.uint8))) == 0.0


@pytest.mark.parametrize("y, x", [(20, 36), (40, 8), (5, 50)])
def test_spectral_residual_peaks_on_an_odd_patch_of_a_periodic_texture(y, x):
    texture = np.zeros((64, 64, 3), np.uint8)
    texture[:, 0::4] = texture[:, 1::4] = 255  # vertical stripes, period 4
    texture[y : y + 8, x : x + 8] = 128  # one grey patch breaks the period
    saliency = spectral_residual(texture)
    peak_y, peak_x = np.unravel_index(saliency.argmax(), saliency.shape)
    assert y <= peak_y < y + 8 and x <= peak_x < x + 8
    far = np.ones((64, 64), bool)
    far[max(0, y - 8) : y + 16, max(0, x - 8) : x + 16] = False
    assert saliency[y : y + 8, x : x + 8].mean() > 1.1 * saliency[far].mean()


def test_cue_registry_and_bad_input():
    assert {"mbd", "mbplus", "spectral_residual"} <= set(list_cues())
    with pytest.raises(KeyError, match="registered: .*mbplus"):
        get_cue("nope")
    with pytest.raises(ValueError, match="image 1 must be"):
        cue_maps("mbd", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)])
    maps = cue_maps("mbplus", [_two_colour(slice(10, 20))] * 2)
    assert maps.shape == (2, 30, 30) and maps.dtype == np.float32
    assert 0.0 <= maps.min() and maps.max() <= 2.0 + 1e-6  # min-max MBD + min-max backgroundness


def test_fuse_with_prior_by_hand():
    cue = np.array([[0.0, 2.0], [4.0, 4.0]])  # min-max: 0, 0.5, 1, 1
    prior = np.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(fuse_with_prior(cue, prior, "sum", 0.25), [[0.75, 0.125], [0.25, 1.0]])
    np.testing.assert_allclose(fuse_with_prior(cue, prior, "product"), [[0.0, 0.0], [0.0, 1.0]])
    assert ("sum", 0.8) in PRIOR_FUSIONS and PRIOR_FUSIONS[-1][0] == "product"
    with pytest.raises(ValueError, match="weight must be in"):
        fuse_with_prior(cue, prior, "sum", 1.5)
    with pytest.raises(ValueError, match="form must be"):
        fuse_with_prior(cue, prior, "max")
    np.testing.assert_array_equal(minmax(np.full((3, 3), 7.0)), np.zeros((3, 3)))


def _raw(rng: np.random.Generator, n: int, size: int = 16) -> tuple[RawMaps, np.ndarray]:
    boxes, maps, cues = [], [], []
    for _ in range(n):
        x0, y0 = rng.integers(0, size // 2, 2)
        x1, y1 = x0 + rng.integers(3, size // 2), y0 + rng.integers(3, size // 2)
        boxes.append(np.array([[x0, y0, x1, y1]]))
        truth = np.zeros((size, size))
        truth[y0 : y1 + 1, x0 : x1 + 1] = 1.0
        maps.append((truth[::2, ::2] + rng.normal(0, 0.6, (size // 2, size // 2))).astype(np.float32))
        cues.append(truth + rng.normal(0, 0.6, (size, size)))
    return RawMaps(np.stack(maps), rng.random(n) > 0.3, boxes, size), np.stack(cues).astype(np.float32)


def test_class_map_fusion_chooses_on_tuning_only():
    from wsol.study.fusion import class_map_fusion, class_scoremaps, fuse_class_map, weight_grid

    assert weight_grid(0.5) == [(0.5, 0.0, 0.5), (0.5, 0.5, 0.0), (1.0, 0.0, 0.0)]
    rng = np.random.default_rng(0)
    tune, cue_tune = _raw(rng, 12)
    val, cue_val = _raw(rng, 10)
    result = class_map_fusion(tune, val, cue_tune, cue_val, step=0.25, cam_curve_interval=0.05)
    # The choice is the tuning maximiser over the grid and the normalisations (the first one on a tie).
    prior = np.ones((16, 16))
    from wsol.evaluation.priors import center_gaussian

    prior = center_gaussian(16, 16)
    scores = {
        (norm, w): summarize(
            score_scoremaps(fuse_class_map(class_scoremaps(tune, norm), cue_tune, prior, w), tune.boxes, 0.05)
        )["MaxBoxAccV2"]
        for norm in ("minmax", "max")
        for w in weight_grid(0.25)
    }
    chosen = (result["class_map_norm"], tuple(result["weights"].values()))
    assert scores[chosen] == max(scores.values()) == result["tune"]["MaxBoxAccV2"]
    assert result["fair"]["tau"] == result["tune"]["tau"] and result["val"]["top1"] == 100 * val.hits.mean()
    # Sentinel: other val boxes (and val maps) change the val numbers but no choice.
    moved = RawMaps(val.maps[::-1].copy(), val.hits, [b // 2 for b in val.boxes], 16)
    again = class_map_fusion(tune, moved, cue_tune, cue_val, step=0.25, cam_curve_interval=0.05)
    for key in ("weights", "class_map_norm", "tune_by_norm", "tune"):
        assert again[key] == result[key]
    assert again["fair"]["tau"] == result["fair"]["tau"] and again["val"] != result["val"]
    with pytest.raises(ValueError, match="expected one 16x16 map per image"):
        class_map_fusion(tune, val, cue_tune[:3], cue_val)


def test_prior_fusion_choice_is_the_tuning_maximiser():
    from wsol.evaluation.priors import center_gaussian
    from wsol.study.label_free import choose_prior_fusion

    rng = np.random.default_rng(1)
    tune, cue = _raw(rng, 10)
    prior = center_gaussian(16, 16)
    (form, weight), curves, candidates = choose_prior_fusion(cue, tune.boxes, prior, 0.05)
    assert len(candidates) == len(PRIOR_FUSIONS) and summarize(curves)["MaxBoxAccV2"] == max(candidates.values())
    assert candidates[f"{form}:{weight:g}"] == max(candidates.values())
    first_best = next(k for k, v in candidates.items() if v == max(candidates.values()))
    assert first_best == f"{form}:{weight:g}"


@pytest.fixture(scope="module")
def study_data():
    from wsol.study.data import load_study_data

    tiny = {"train_per_class": 8, "val_per_class": 4, "image_size": 32, "num_classes": 3, "clutter": 2}
    return load_study_data("synthetic", None, 32, 2, {"n3": 3}, 0, tiny, tiny)


def test_label_free_rows_cache_their_maps_and_name_the_baseline(tmp_path, study_data, monkeypatch):
    import wsol.saliency
    from wsol.study import label_free
    from wsol.study.scoring import reference_rows

    calls: list[tuple[str, int]] = []
    real = wsol.saliency.cue_maps

    def counted(name, images):
        calls.append((name, len(images)))
        return real(name, images)

    monkeypatch.setattr(wsol.saliency, "cue_maps", counted)
    rows = reference_rows(study_data, tmp_path, cam_curve_interval=0.05)
    n_tune, n_val = len(study_data.tune), len(study_data.val)
    assert sorted(calls) == sorted((c, n) for c in label_free.SALIENCY_CUES for n in (n_tune, n_val))
    for cue in label_free.SALIENCY_CUES:
        for name in (cue, f"{cue}+center"):
            saved = json.loads((tmp_path / f"{name}.json").read_text())
            assert saved == json.loads(json.dumps(rows[name]))
            assert {"tune", "val", "fair", "settings"} <= set(saved) and saved["tune"]["n_images"] == n_tune
    fused = rows["mbplus+center"]["fusion"]
    assert rows["mbplus+center"]["tune"]["MaxBoxAccV2"] == max(fused["tune_by_candidate"].values())
    # The baseline is the best tuning score among the centre prior, the cues and their fusions.
    baseline = json.loads((tmp_path / "label_free_baseline.json").read_text())
    candidates = {k: v["tune"]["MaxBoxAccV2"] for k, v in rows.items() if k not in ("all_ones", "label_free_baseline")}
    assert baseline["name"] == max(sorted(candidates), key=candidates.get)
    assert baseline["fair"] == rows[baseline["name"]]["fair"] and baseline["candidates_tune"] == candidates

    # A second call computes no cue and rewrites no row; a cue missing from the cache is the only one computed.
    calls.clear()
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.json") if p.name != "label_free_baseline.json"}
    assert reference_rows(study_data, tmp_path, cam_curve_interval=0.05) == rows and calls == []
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    split = label_free.load_cue_maps(study_data, "tune", tmp_path, ("mbd",))
    assert calls == [] and split.maps["mbd"].shape == (n_tune, 32, 32)
    np.testing.assert_array_equal(split.maps["mbd"], cue_maps("mbd", label_free.eval_images(study_data.tune, 32)))


def _random_maps(study_data, seed: int):
    """The study data's tune/val boxes and a maker of random 4x4 raw maps over those images, per split."""
    rng = np.random.default_rng(seed)
    boxes = {
        s: [b.numpy().reshape(-1, 4) for batch in study_data.eval_loader(s) for b in batch["boxes"]]
        for s in ("tune", "val")
    }

    def raw(split: str) -> RawMaps:
        n = len(boxes[split])
        return RawMaps(rng.normal(size=(n, 4, 4)).astype(np.float32), rng.random(n) > 0.5, boxes[split], 32)

    return boxes, raw


def test_fused_runs_cache_beside_each_run_and_recompute_when_maps_change(tmp_path, study_data, monkeypatch):
    from wsol.study import fusion
    from wsol.study.scoring import write_maps

    boxes, raw = _random_maps(study_data, 2)

    run = tmp_path / "runs" / "n3" / "cam" / "default"
    run.mkdir(parents=True)
    (run / "seed0.json").write_text(json.dumps({"seed": 0, "method": "cam", "seconds": {"total": 10.0}, "n_train": 6}))
    write_maps(
        run / "seed0.maps.npz", {"tune": raw("tune"), "val": raw("val"), "tunetta": raw("tune"), "valtta": raw("val")}
    )
    calls = []
    real = fusion.class_map_fusion
    monkeypatch.setattr(fusion, "class_map_fusion", lambda *a, **k: calls.append(1) or real(*a, **k))
    records = fusion.fused_runs(tmp_path, study_data, step=0.5, cam_curve_interval=0.05)
    assert [r["method"] for r in records] == ["cam+mbplus", "cam_tta+mbplus"] and len(calls) == 2
    first = records[0]
    assert first["seed"] == 0 and first["variant"] == "default" and first["regime"] == "n3"
    assert first["seconds"]["total"] == pytest.approx(10.0 + first["seconds"]["fusion"])
    cached = json.loads((run / "seed0.fused.json").read_text())
    assert cached["kinds"]["plain"]["fair"] == first["fair"]
    assert fusion.fused_runs(tmp_path, study_data, step=0.5, cam_curve_interval=0.05) == records and len(calls) == 2
    (run / "seed0.fused.json").write_text("{not json")  # a damaged cache is recomputed, not trusted
    redone = fusion.fused_runs(tmp_path, study_data, step=0.5, cam_curve_interval=0.05)
    assert [r["fair"] for r in redone] == [r["fair"] for r in records] and len(calls) == 4
    # New maps (a rerun) or new settings: recomputed.
    write_maps(run / "seed0.maps.npz", {"tune": raw("tune"), "val": raw("val")})
    assert [r["method"] for r in fusion.fused_runs(tmp_path, study_data, step=0.5, cam_curve_interval=0.05)] == [
        "cam+mbplus"
    ]
    assert len(calls) == 5
    fusion.fused_runs(tmp_path, study_data, step=0.25, cam_curve_interval=0.05)
    assert len(calls) == 6
    # Maps of other images are refused with the file's name.
    write_maps(
        run / "seed0.maps.npz",
        {"tune": RawMaps(raw("tune").maps, raw("tune").hits, [b + 1 for b in boxes["tune"]], 32), "val": raw("val")},
    )
    with pytest.raises(ValueError, match="seed0.maps.npz: its tune boxes differ"):
        fusion.fused_runs(tmp_path, study_data, step=0.5, cam_curve_interval=0.05)


def test_fused_runs_over_worker_processes_equal_the_one_process_records(tmp_path, study_data):
    import shutil

    from wsol.study import fusion
    from wsol.study.scoring import write_maps

    _, raw = _random_maps(study_data, 3)
    one, two = tmp_path / "one", tmp_path / "two"
    for seed in range(3):
        run = one / "runs" / "n3" / "cam" / "default"
        run.mkdir(parents=True, exist_ok=True)
        (run / f"seed{seed}.json").write_text(json.dumps({"seed": seed, "seconds": {"total": 1.0}, "n_train": 6}))
        write_maps(run / f"seed{seed}.maps.npz", {"tune": raw("tune"), "val": raw("val")})
    shutil.copytree(one, two)
    serial = fusion.fused_runs(one, study_data, step=0.5, cam_curve_interval=0.05)
    spread = fusion.fused_runs(two, study_data, step=0.5, cam_curve_interval=0.05, workers=2, progress=True)
    drop = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert [r["seed"] for r in spread] == [0, 1, 2] and drop(spread) == drop(serial)
    for seed in range(3):
        a, b = (json.loads((f / "runs/n3/cam/default" / f"seed{seed}.fused.json").read_text()) for f in (one, two))
        assert a["settings"] == b["settings"] and a["kinds"]["plain"]["fair"] == b["kinds"]["plain"]["fair"]
    # A worker's failure reaches the caller with the file's name; the runs already fused stay cached.
    bad = two / "runs/n3/cam/default/seed1.maps.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="seed1.maps.npz: unreadable maps file"):
        fusion.fused_runs(two, study_data, step=0.5, cam_curve_interval=0.05, workers=2)
    assert (two / "runs/n3/cam/default/seed0.fused.json").is_file()
