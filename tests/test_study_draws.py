"""The multi-draw study: seeded disjoint draws, the paired interval, the pooled report and its choices."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from dataset_fixtures import write_tiny_imagenet

from wsol.cli import main
from wsol.data.prepare import subset_tiny_imagenet
from wsol.study.draws import draw_classes, prepare_draws, read_draws, write_draws
from wsol.study.pooled import (
    DrawScores,
    RowOnDraw,
    label_free_baseline,
    paired_interval,
    pool_rows,
    write_pooled_report,
)

V2 = "MaxBoxAccV2"


def test_draws_are_seeded_disjoint_and_never_the_dev_classes():
    available = [f"n{i:08d}" for i in range(60)]
    dev = available[5:15]
    indexed = draw_classes(available, dev, n_draws=4, classes=10)
    assert [i for i, _ in indexed] == [1, 2, 3, 4]
    draws = [d for _, d in indexed]
    assert indexed == draw_classes(list(reversed(available)), list(reversed(dev)), 4, 10)  # order-free, seeded
    flat = [w for d in draws for w in d]
    assert len(flat) == len(set(flat)) == 40 and not set(flat) & set(dev)
    assert all(d == sorted(d) and len(d) == 10 for d in draws)
    # Draw i is the subset tool's draw with seed i and the dev + earlier draws excluded: recut from its index.
    assert draws[0] == sorted(np.random.default_rng(1).choice(sorted(set(available) - set(dev)), 10, replace=False))
    # Another dev set changes the draws; too few classes left is refused with the draw's number.
    assert draw_classes(available, available[:10], 4, 10) != indexed
    with pytest.raises(ValueError, match="draw 5: only 6 classes left"):
        draw_classes(available, dev, n_draws=5, classes=11)
    with pytest.raises(ValueError, match=r"dev classes \['n99999999'\]"):
        draw_classes(available, ["n99999999"], 1)


def test_a_draw_with_an_unusable_class_is_skipped_and_the_others_stay():
    available = [f"n{i:08d}" for i in range(60)]
    dev = available[5:15]
    plain = draw_classes(available, dev, n_draws=4, classes=10)
    broken = plain[1][1][3]  # a class of draw 2 that the source cannot serve
    usable = [w for w in available if w != broken]
    skipping = draw_classes(available, dev, n_draws=4, classes=10, usable=usable)
    # Draws 1, 3 and 4 are the same classes as when every class is usable; draw 5 takes draw 2's place.
    assert [i for i, _ in skipping] == [1, 3, 4, 5]
    assert skipping[:3] == [plain[0], plain[2], plain[3]]
    assert broken not in {w for _, d in skipping for w in d}


def test_prepare_draws_cuts_once_and_refuses_a_folder_of_other_classes(tmp_path):
    write_tiny_imagenet(tmp_path / "full", per_class=1, classes=7)
    (tmp_path / "full" / "words.txt").write_text("".join(f"n{i:08d}\tname{i}, other\n" for i in range(1, 8)))
    subset_tiny_imagenet(tmp_path / "full", tmp_path / "dev", wnids=["n00000002"])
    draws = prepare_draws(tmp_path / "full", tmp_path / "cut", tmp_path / "dev", n_draws=3, classes=2)
    assert [d.name for d in draws] == ["dev", "h1", "h2", "h3"]
    want = draw_classes([f"n{i:08d}" for i in range(1, 8)], ["n00000002"], 3, 2)
    assert [list(d.wnids) for d in draws[1:]] == [c for _, c in want]
    assert draws[1].words[draws[1].wnids[0]] == f"name{int(draws[1].wnids[0][1:])}"
    # Second call: no source needed, the folders are read back as they are.
    again = prepare_draws(None, tmp_path / "cut", tmp_path / "dev", n_draws=3, classes=2)
    assert [d.wnids for d in again] == [d.wnids for d in draws]
    write_draws(tmp_path / "draws.json", draws)
    record = read_draws(tmp_path / "draws.json")
    assert record["h1"]["seed"] == 1 and record["dev"]["classes"] == {"n00000002": "name2"}
    assert str(tmp_path) not in (tmp_path / "draws.json").read_text()  # no machine path in the record
    with pytest.raises(ValueError, match="holds 3 cut draws, 4 asked for: pass --source"):
        prepare_draws(None, tmp_path / "cut", tmp_path / "dev", n_draws=4, classes=2)
    # A class whose training boxes the source lacks is never drawn: its draw is skipped, the others stay.
    broken = draws[2].wnids[0]
    (tmp_path / "full" / "train" / broken / f"{broken}_boxes.txt").unlink()
    skipped = prepare_draws(tmp_path / "full", tmp_path / "cut2", tmp_path / "dev", n_draws=2, classes=2)
    assert [d.name for d in skipped] == ["dev", "h1", "h3"] and skipped[2].wnids == draws[3].wnids
    # Another dev draw means other held-out draws: the folders cut for the first one are refused.
    subset_tiny_imagenet(tmp_path / "full", tmp_path / "dev2", wnids=["n00000005"])
    with pytest.raises(ValueError, match=r"holds classes .* but draw h\d of this source is"):
        prepare_draws(tmp_path / "full", tmp_path / "cut", tmp_path / "dev2", n_draws=1, classes=2)


def test_paired_interval_on_constructed_cases():
    assert paired_interval({"h1": [2.5]}) == (2.5, 2.5, 2.5)
    # Two draws whose seeds agree: the bootstrap means are 1, 2 or 3 (prob. 1/4, 1/2, 1/4): the 95% interval is
    # [1, 3], the mean 2.
    mean, low, high = paired_interval({"h1": [1.0, 1.0], "h2": [3.0, 3.0]})
    assert (mean, low, high) == (2.0, 1.0, 3.0)
    # Each draw weighs the same whatever its seed count; the interval is reproducible from its seed.
    assert paired_interval({"h1": [0.0], "h2": [4.0, 4.0, 4.0]})[0] == 2.0
    assert paired_interval({"a": [1.0, 2.0], "b": [0.0, 5.0]}, seed=3) == paired_interval(
        {"a": [1.0, 2.0], "b": [0.0, 5.0]}, seed=3
    )
    with pytest.raises(ValueError, match="no deltas"):
        paired_interval({})


def _ref(tune, val):
    return {"tune": {V2: tune}, "fair": {V2: val}, "val": {V2: val}}


def _row(name, fair, tune, supervision="labels"):
    seeds = range(len(fair))
    return RowOnDraw(
        name, "default", "minmax", supervision, dict(zip(seeds, fair, strict=True)), dict(zip(seeds, tune, strict=True))
    )


def _draws(val_shift=0.0):
    refs = lambda c, m: {"center_gaussian": _ref(60, c), "mbplus": _ref(m, c + 1), "all_ones": _ref(99, 0)}  # noqa: E731
    return [
        DrawScores("dev", {"a": _row("a", [70], [71])}, refs(62, 66)),
        DrawScores(
            "h1",
            {
                "a": _row("a", [61 + val_shift, 63 + val_shift], [62, 62]),
                "b": _row("b", [70, 70], [59, 59]),
                "fsl_all": _row("fsl_all", [80, 80], [80, 80], "boxes"),
            },
            refs(58, 59),
        ),
        DrawScores(
            "h2",
            {
                "a": _row("a", [57, 59], [62, 62]),
                "b": _row("b", [40, 40], [59, 59]),
                "fsl_all": _row("fsl_all", [70, 70], [70, 70], "boxes"),
            },
            refs(55, 61),
        ),
    ]


def test_pooled_rows_pair_each_seed_with_its_draws_baseline_and_choose_on_tune_only(tmp_path):
    draws = _draws()
    # The baseline is the best label-free row on tune: h1 centre (60 > 59), h2 mbplus (61 > 60).
    assert draws[1].baseline[0] == "center_gaussian" and draws[2].baseline[0] == "mbplus"
    pooled = {p.row: p for p in pool_rows(draws)}
    a = pooled["a"]
    # h1: (61-58, 63-58) = (3, 5) -> 4; h2 baseline is mbplus's val 56: (1, 3) -> 2; mean 3.
    assert a.per_draw == {"h1": 4.0, "h2": 2.0} and a.delta == 3.0 and a.runs == 4
    assert a.tune_delta == pytest.approx(((62 - 60) + (62 - 61)) / 2)
    # Gap: ceiling (80, 70) minus baseline (58, 56) -> mean 18; a closes 3/18.
    assert a.gap_fraction == pytest.approx(100 * 3 / 18)
    assert a.dev_delta == 70 - 63  # dev baseline: mbplus (tune 66 > 60), val 62 + 1
    paths = write_pooled_report(tmp_path, draws, {"h1": {"seed": 1, "classes": {"n1": "cat"}}})
    text = paths["markdown"].read_text().splitlines()
    # b's val margin is larger on h1 but its tuning margin is lower: a is named, by the tuning split.
    assert re.fullmatch(
        r"Best WSOL row on held-out draws: \*\*a\*\* \(\+3\.00 over the label-free baseline, 95% interval "
        r"\[\+\d\.\d\d, \+\d\.\d\d\]; 17% of the gap to the supervised ceiling, which is \+18\.00 above the baseline\)",
        text[2],
    )
    assert text[0].startswith("# ") and text[1] == ""
    assert "not met" in text[4] and "above the baseline on 2 of 2 draws" in text[4]
    assert "| h1 | 1 | n1 cat |" in text
    assert paths["csv"].read_text().count("\n") == 1 + 1 + 2 * 3 * 2
    assert paths["plot"].stat().st_size > 1000
    # A row measured on one held-out draw has no interval over draws to show.
    lone = _draws()
    lone[1].rows["c"] = _row("c", [64, 66], [61, 61])
    lone_text = write_pooled_report(tmp_path / "l", lone, {})["markdown"].read_text()
    assert "| c | 1 × 2 | **+7.00** | — (one draw) |" in lone_text
    assert re.search(r"\| a \| 2 × 4 \| \*\*\+3\.00\*\* \| \[\+\d\.\d\d, \+\d\.\d\d\] \|", lone_text)
    # With the ceiling measured on h1 only, the gap and the fraction read h1 alone, and the headline says so.
    partial = _draws()
    del partial[2].rows["fsl_all"]
    a1 = {p.row: p for p in pool_rows(partial)}["a"]
    assert a1.gap_fraction == pytest.approx(100 * 4 / (80 - 58))
    line = write_pooled_report(tmp_path / "p", partial, {})["markdown"].read_text().splitlines()[2]
    assert line.endswith("which is +22.00 above the baseline on the 1 of 2 held-out draws where it was measured)")
    # The ceiling is the box-trained row with the better tuning score per draw: a 16x16 one that tunes higher on
    # h2 replaces fsl_all there (gap (80 - 58 + 75 - 56) / 2), and one that tunes lower on h1 does not.
    hires = _draws()
    hires[1].rows["fsl_all_hires16"] = _row("fsl_all_hires16", [90, 90], [79, 79], "boxes")
    hires[2].rows["fsl_all_hires16"] = _row("fsl_all_hires16", [75, 75], [71, 71], "boxes")
    assert [d.ceiling for d in hires[1:]] == [("fsl_all", 80.0), ("fsl_all_hires16", 75.0)]
    assert {p.row: p for p in pool_rows(hires)}["a"].gap_fraction == pytest.approx(100 * 3 / ((22 + 19) / 2))
    text3 = write_pooled_report(tmp_path / "c", hires, {})["markdown"].read_text()
    assert "| **supervised ceiling** (best on tune) | — | fsl_all 80.00 | fsl_all_hires16 75.00 |" in text3
    assert _draws()[0].ceiling is None
    # A ceiling under a point above the baseline (h1: 58.5 vs 58; h2: 57 vs 56) gives no fraction: 3 / 0.75 would
    # read 400%.
    flat = _draws()
    flat[1].rows["fsl_all"] = _row("fsl_all", [58.5, 58.5], [80, 80], "boxes")
    flat[2].rows["fsl_all"] = _row("fsl_all", [57, 57], [70, 70], "boxes")
    assert {p.row: p for p in pool_rows(flat)}["a"].gap_fraction is None
    assert (
        "; — of the gap to the supervised ceiling, which is +0.75 above the baseline)"
        in (write_pooled_report(tmp_path / "f", flat, {})["markdown"].read_text().splitlines()[2])
    )
    # Sentinel: val changes move the numbers but no choice (baseline per draw, best row).
    shifted = _draws(val_shift=-20.0)
    assert [d.baseline[0] for d in shifted] == [d.baseline[0] for d in draws]
    text2 = write_pooled_report(tmp_path / "s", shifted, {})["markdown"].read_text().splitlines()
    assert text2[2].startswith("Best WSOL row on held-out draws: **a** (-7.00")


def test_label_free_baseline_ignores_all_ones_and_needs_a_row():
    assert label_free_baseline({"all_ones": _ref(99, 0), "center_gaussian": _ref(1, 2)})[0] == "center_gaussian"
    with pytest.raises(ValueError, match="no label-free reference row"):
        label_free_baseline({"all_ones": _ref(99, 0)})


@pytest.mark.slow
def test_draws_command_cuts_trains_resumes_and_pools(tmp_path, capsys):
    write_tiny_imagenet(tmp_path / "full", per_class=4, classes=6)
    subset_tiny_imagenet(tmp_path / "full", tmp_path / "dev", wnids=["n00000001", "n00000004"])
    args = [
        "study", "draws", "--source", str(tmp_path / "full"), "--draws-root", str(tmp_path / "cut"),
        "--dev", str(tmp_path / "dev"), "--n-draws", "1", "--classes", "2", "--out", str(tmp_path / "out"),
        "--methods", "cam,fsl_all", "--seeds", "1", "--dev-seeds", "1", "--tune-per-class", "1",
        "--epochs", "1", "--width", "8", "--image-size", "32", "--cam-curve-interval", "0.05", "--no-progress",
        "--precision", "32-true",
    ]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "pooled report:" in out
    record = json.loads((tmp_path / "out" / "draws.json").read_text())
    assert list(record) == ["dev", "h1"] and record["dev"]["seed"] is None
    for draw in ("dev", "h1"):
        assert (tmp_path / "out" / draw / "runs" / "all" / "cam" / "default" / "seed0.json").is_file()
        assert (tmp_path / "out" / draw / "results.md").is_file()
    # The fused rows of the kept maps are pooled too (their caches sit beside the runs and are not runs).
    assert (tmp_path / "out" / "h1" / "runs" / "all" / "cam" / "default" / "seed0.fused.json").is_file()
    pooled = (tmp_path / "out" / "pooled.md").read_text().splitlines()
    assert any(line.startswith("| cam+mbplus |") for line in pooled)
    assert any(line.startswith("| cam_tta+mbplus |") for line in pooled)
    # One of the WSOL rows is named (chosen on tune), never the box-supervised ceiling.
    assert re.match(r"Best WSOL row on held-out draws: \*\*cam(\+mbplus|_tta\+mbplus)?\*\* \(", pooled[2])
    assert "fsl_all (reference, boxes)" in "\n".join(pooled)
    mtime = (tmp_path / "out" / "h1" / "runs" / "all" / "cam" / "default" / "seed0.json").stat().st_mtime
    assert main([*args, "--draws", "h1"]) == 0  # resumes: nothing retrained
    assert (tmp_path / "out" / "h1" / "runs" / "all" / "cam" / "default" / "seed0.json").stat().st_mtime == mtime
    assert main([*args, "--draws", "h9"]) == 2
    assert "unknown --draws ['h9']" in capsys.readouterr().err
    assert main([*args, "--fusion-workers", "0"]) == 2
    assert "--fusion-workers must be >= 1, got 0" in capsys.readouterr().err
    # A one-class draw is refused in one line, not trained.
    subset_tiny_imagenet(tmp_path / "full", tmp_path / "one", wnids=["n00000001"])
    assert main(["study", "small-data", "--data", str(tmp_path / "one"), "--out", str(tmp_path / "o1")]) == 2
    assert "the study needs at least 2 classes, found 1" in capsys.readouterr().err
