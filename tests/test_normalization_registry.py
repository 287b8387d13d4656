"""One registry of score-map normalisations: a rule registered here reaches every consumer.

The toy rule ``square`` is min-max squared, ``((m - min) / (max - min)) ** 2``; it reads no percentile. Each test
registers it, finds it in one consumer (library, command line, study, export, docs), and removes it again.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wsol.metrics.normalization import (
    NORMALIZATIONS,
    NormalizationRule,
    check_normalization,
    normalization_rules,
    normalization_table,
    normalize_scoremaps,
    normalize_scoremaps_torch,
    register_normalization,
)

HAND = np.array([[-2.0, 0.0], [2.0, 6.0]])
HAND_SQUARE = np.array([[0.0, 0.0625], [0.25, 1.0]])  # min-max gives [0, .25, .5, 1]


def _square_numpy(m: np.ndarray, percentile: float) -> np.ndarray:
    if not np.isfinite(m).all() or m.min() == m.max():
        return np.zeros_like(m)
    return ((m - m.min()) / (m.max() - m.min())) ** 2


def _square_torch(rows: torch.Tensor, percentile: float) -> torch.Tensor:
    lo, hi = rows.amin(dim=1, keepdim=True), rows.amax(dim=1, keepdim=True)
    return ((rows - lo) / (hi - lo).clamp_min(1e-300)) ** 2


def _square_onnx(flat: torch.Tensor, percentile: float, eps: float) -> torch.Tensor:
    lo = flat.amin(dim=-1, keepdim=True)
    return ((flat - lo) / (flat.amax(dim=-1, keepdim=True) - lo + eps)) ** 2


SQUARE = NormalizationRule(
    name="square",
    numpy=_square_numpy,
    torch=_square_torch,
    onnx=_square_onnx,
    formula="`((m − min) / (max − min))²`",
    degenerate="NaN/±inf, constant",
    title="`square` (a test's toy)",
    cli="square (min-max squared)",
    onnx_formula=lambda percentile, size, eps: f"per map ((x - min) / (max - min + {eps:g}))^2",
)


@pytest.fixture
def square():
    register_normalization(SQUARE)
    try:
        yield SQUARE
    finally:
        NORMALIZATIONS.remove("square")
    assert "square" not in NORMALIZATIONS


def test_builtin_rules_in_order_with_their_parameters():
    rules = normalization_rules()
    assert [r.name for r in rules] == ["minmax", "max", "pas", "ivr"]
    assert [r.name for r in rules if r.uses_percentile] == ["ivr"]
    assert [r.name for r in rules if r.sorted_index] == ["pas", "ivr"]
    assert rules[3].record(0.3) == {"method": "ivr", "percentile": 0.3}
    assert rules[2].record(0.3) == {"method": "pas", "percentile": None}
    assert rules[3].label(0.3) == "ivr (percentile 0.3)" and rules[0].label(0.3) == "minmax"
    with pytest.raises(ValueError, match="already registered"):
        register_normalization(rules[0])


def test_docs_table_is_the_registry():
    protocol = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    assert normalization_table() in protocol


def test_toy_rule_in_the_library(square):
    assert normalization_rules()[-1] is square
    check_normalization("square")
    np.testing.assert_array_equal(normalize_scoremaps(HAND, "square"), HAND_SQUARE)
    maps = np.stack([HAND, np.full((2, 2), 3.0), np.array([[np.nan, 1.0], [2.0, 3.0]])])
    expected = np.stack([HAND_SQUARE, np.zeros((2, 2)), np.zeros((2, 2))])  # constant and NaN maps give zeros
    np.testing.assert_array_equal(normalize_scoremaps(maps, "square"), expected)
    np.testing.assert_array_equal(normalize_scoremaps_torch(torch.from_numpy(maps), "square").numpy(), expected)
    with pytest.raises(ValueError, match="one of minmax, max, pas, ivr, square, got 'cube'"):
        check_normalization("cube")
    assert "square" in normalization_table() and "(a test's toy)" in normalization_table()


def test_toy_rule_on_the_command_line(square, tmp_path, capsys):
    from wsol.cli import build_parser, main

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    help_text = sub.choices["evaluate"].format_help()
    assert "{minmax,max,pas,ivr,square}" in help_text and "square (min-max squared)" in help_text

    raw = np.zeros((2, 8, 8))
    raw[:, 2:6, 2:6] = 1.0
    raw[:, 0, 0] = -1.0
    npz = tmp_path / "m.npz"
    np.savez(npz, cams=raw, gt_boxes_flat=np.array([[2, 2, 5, 5]] * 2), gt_box_counts=np.array([1, 1]))
    out = tmp_path / "e.json"
    argv = ["evaluate", "--no-progress", "--npz", str(npz), "--normalization", "square", "--out", str(out)]
    assert main(argv) == 0
    assert "raw maps normalised by square" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["normalization"] == {"method": "square", "percentile": None}
    # The same numbers as the maps squared beforehand and read as score maps.
    squared = tmp_path / "s.npz"
    np.savez(squared, cams=normalize_scoremaps(raw, "square"), gt_boxes_flat=np.array([[2, 2, 5, 5]] * 2),
             gt_box_counts=np.array([1, 1]))  # fmt: skip
    assert main(["evaluate", "--no-progress", "--npz", str(squared), "--out", str(tmp_path / "s.json")]) == 0
    direct = json.loads((tmp_path / "s.json").read_text())
    assert result["curves"] == direct["curves"] and result["MaxBoxAccV2"] == direct["MaxBoxAccV2"]
    minmax = tmp_path / "m.json"
    assert main([*argv[:-4], "--normalization", "minmax", "--out", str(minmax)]) == 0
    assert json.loads(minmax.read_text())["curves"] != result["curves"]  # the rule matters on these maps


def test_toy_rule_in_the_study(square):
    from wsol.study.report import _norm_table
    from wsol.study.scoring import NORM_VARIANTS, RawMaps, normalization_scores

    assert NORM_VARIANTS["square"] == ("square", 0.6) and list(NORM_VARIANTS)[-1] == "square"
    maps = np.zeros((2, 4, 4), np.float32)
    maps[:, 1:3, 1:3] = 1.0
    raw = RawMaps(maps, np.ones(2, bool), [np.array([[4, 4, 11, 11]])] * 2, 16)
    scores = normalization_scores(raw, raw, 0.01, names=["minmax", "square"])
    assert set(scores) == {"minmax", "square"} and scores["square"]["val"]["MaxBoxAccV2"] > 0

    def part(value: float) -> dict:
        return {"tune": {"MaxBoxAccV2": value}, "val": {"MaxBoxAccV2": value}, "fair": {"MaxBoxAccV2": value}}

    norms = {"minmax": part(50.0), "max": part(40.0), "pas": part(45.0), "ivr0.3": part(48.0), "square": part(55.0)}
    runs = [{**part(50.0), "norms": norms}]
    table = _norm_table([("cam", "default", runs)])
    assert "| method | minmax | max | pas | ivr (p from tune) | square | chosen − minmax |" in table
    assert "| cam | 50.00 | 40.00 | 45.00 | 48.00 (p 0.3) | **55.00** | +5.00 |" in table


class _TinyCAM(torch.nn.Module):
    """Three class maps at a quarter of the input size, their means as logits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward_with_cams(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = torch.nn.functional.avg_pool2d(self.conv(images), 4)
        return maps.mean(dim=(2, 3)), maps


def test_toy_rule_in_the_export(square):
    from wsol.onnx import ExportWrapper
    from wsol.onnx.sidecar import cams_entry

    model = _TinyCAM()
    wrapper = ExportWrapper(model, "top1", (32, 32), normalization="square", dynamic_size=True)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, cams = wrapper(images)
        minmax = ExportWrapper(model, "top1", (32, 32))(images)[1]
    torch.testing.assert_close(cams, minmax**2)
    entry = cams_entry(wrapper)
    assert entry["normalization"] == "per map ((x - min) / (max - min + 1e-05))^2"
    assert (entry["normalization_method"], entry["percentile"]) == ("square", None)


@pytest.mark.slow
def test_toy_rule_exports_and_matches_in_onnxruntime(square, tmp_path):
    from wsol.onnx import export_onnx

    result = export_onnx(_TinyCAM(), tmp_path / "square.onnx", image_size=(32, 32), normalization="square")
    assert result.parity["pass"] and result.parity["cams_max_abs"] < 1e-4
    sidecar = json.loads(result.sidecar_path.read_text())
    assert sidecar["cams"]["normalization"] == "per map ((x - min) / (max - min + 1e-05))^2"
