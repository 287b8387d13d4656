"""Parallel evaluation must not deadlock in a process whose OpenCV thread pool is already running."""

import json
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = """
import sys
import cv2
import numpy as np
import pytest
a = np.random.rand(512, 512).astype(np.float32)
for _ in range(3):  # start OpenCV's worker threads before the evaluator forks
    cv2.GaussianBlur(cv2.resize(a, (900, 900)), (5, 5), 0)
from wsol.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_workers_after_opencv_threads_started(tmp_path):
    rng = np.random.default_rng(0)
    n = 24
    cams = rng.random((n, 32, 32)).astype(np.float32)
    boxes = np.tile(np.array([[4, 4, 20, 20]]), (n, 1))
    np.savez(tmp_path / "case.npz", cams=cams, gt_boxes_flat=boxes, gt_box_counts=np.ones(n, np.int64))
    out = tmp_path / "res.json"
    args = ["evaluate", "--npz", str(tmp_path / "case.npz"), "--workers", "2", "--out", str(out), "--metrics", "boxes"]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    single = tmp_path / "single.json"
    args1 = [*args[:-4], "--out", str(single), "--metrics", "boxes"]
    args1[args1.index("--workers") + 1] = "1"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args1], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parallel, serial = json.loads(out.read_text()), json.loads(single.read_text())
    assert parallel["MaxBoxAccV2"] == serial["MaxBoxAccV2"]
