"""The training-step benchmarks run end to end on a tiny setting and print their baseline's ratio as 1.00."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = ["--batch-size", "2", "--image-size", "32", "--steps", "1", "--warmup", "0", "--threads", "1"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "extra", "baseline", "rows"),
    [
        ("seam_step.py", [], "cam", ["seam (rescale 0.3)", "seam (flip)", "mixup_cam"]),
        ("method_step.py", ["--rows", "cam,fsl,seam"], "cam", ["fsl", "seam"]),
        ("mixer_overhead.py", [], "none", ["cutmix", "fmix", "gmix", "hmix", "mixup", "resizemix"]),
        ("dynamic_mixer_step.py", ["--skip-224", "--cpu"], "none", ["cutmix", "puzzlemix", "automix"]),
    ],
)
def test_step_benchmark_runs_and_reports_every_row(script: str, extra: list[str], baseline: str, rows: list[str]):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *TINY, *extra], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {line.split("  ")[0].strip(): line.split() for line in done.stdout.splitlines() if "  " in line}
    assert float(lines[baseline][2]) == float(lines[baseline][3]) == 1.0  # median and fastest vs itself
    for row in rows:
        assert row in lines, f"{script}: no line for {row}\n{done.stdout}"
    if script == "dynamic_mixer_step.py":  # the second baseline's columns
        assert float(lines["cutmix"][4]) == float(lines["cutmix"][5]) == 1.0
