import json

import pytest

from wsol.cli import main
from wsol.models import list_backbones


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("quickstart", "backbones", "evaluate"):
        assert name in out


def test_backbones_prints_one_name_per_line(capsys):
    assert main(["backbones"]) == 0
    assert capsys.readouterr().out.split() == list_backbones()


def test_missing_data_folder_is_reported_without_traceback(tmp_path, capsys):
    code = main(["quickstart", "--out", str(tmp_path / "q"), "--data", str(tmp_path / "missing")])
    assert code == 2
    err = capsys.readouterr().err
    assert "wsol quickstart: error:" in err and "missing" in err and "Traceback" not in err


@pytest.mark.slow
def test_quickstart_end_to_end_tiny(tmp_path):
    out = tmp_path / "q"
    args = [
        "quickstart",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--train-per-class",
        "6",
        "--val-per-class",
        "3",
        "--batch-size",
        "8",
    ]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["top1_acc"] <= 100.0
    v2 = metrics["MaxBoxAccV2"]
    assert set(v2["per_iou"]) == {"30", "50", "70"} or set(v2["per_iou"]) == {30, 50, 70}
    assert v2["value"] == pytest.approx(sum(v2["per_iou"].values()) / 3)
    assert 0.0 <= metrics["center_baseline_MaxBoxAccV2"]["value"] <= 100.0
    assert metrics["num_val_images"] == 15
    png = (out / "overlays.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_help_and_the_evaluator_import_no_torch(tmp_path):
    import subprocess
    import sys

    import numpy as np

    maps = np.zeros((2, 16, 16))
    maps[:, 4:9, 4:9] = 1.0
    np.savez(tmp_path / "m.npz", cams=maps, gt_boxes_flat=np.array([[4, 4, 8, 8]] * 2), gt_box_counts=np.array([1, 1]))
    code = (
        "import sys\n"
        "from wsol.cli import build_parser, main\n"
        "build_parser()\n"
        f"assert main(['evaluate', '--npz', {str(tmp_path / 'm.npz')!r}, '--out', {str(tmp_path / 'e.json')!r}]) == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_lightning', 'torchvision'))\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
