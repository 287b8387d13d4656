"""``wsol evaluate`` as a user runs it (a whole process: start-up, reading files, scoring) against a plain loop.

Writes N score maps in the reference layout (``metadata/`` + one ``.npy`` per image, 224x224 float64, boxes of
the reference case ``synth_200.npz`` repeated to N images) into a temporary folder, then times, as separate
processes interleaved round by round (the best round is kept):

* ``plain``: a Python process that reads the same files and scores MaxBoxAccV2 with the reference's loops as
  written in clovaai/wsolevaluation (one ``cv2.threshold`` + ``cv2.findContours`` per threshold and image, from
  ``tests/plain_wsoleval.py``); the baseline of the ratio;
* ``wsol evaluate``: ``wsol evaluate --metadata ... --scoremaps ... --metrics boxes`` (MaxBoxAcc and V2);
* ``wsol --help``: the command line's start-up alone.

It also checks that ``wsol evaluate`` never imports torch, and that both give the same MaxBoxAccV2.

    python benchmarks/evaluate_process.py --images 500 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NPZ = (
    Path(os.environ.get("WSOL_REFERENCE", ROOT / ".." / "shared" / "reference" / "wsoleval")) / "synth_200.npz"
)
WSOL = [sys.executable, "-m", "wsol.cli"]

PLAIN = """
import sys, time
from pathlib import Path
import cv2, numpy as np
sys.path.insert(0, {tests!r})
from plain_wsoleval import plain_box_curves
cv2.setNumThreads(1)
meta, maps, interval = Path({meta!r}), Path({maps!r}), {interval!r}
ids = meta.joinpath("image_ids.txt").read_text().split()
boxes = {{}}
for line in meta.joinpath("localization.txt").read_text().splitlines():
    image_id, *box = line.split(",")
    boxes.setdefault(image_id, []).append([float(v) for v in box])
cams = np.stack([np.load(maps / (i + ".npy")) for i in ids])
counts, _ = plain_box_curves(cams, [np.array(boxes[i]) for i in ids], interval, multi_contour=True)
n = len(ids)
print(float(np.mean([counts[iou].max() / n * 100 for iou in (30, 50, 70)])))
"""


def _write_layout(npz: Path, folder: Path, images: int) -> tuple[Path, Path]:
    with np.load(npz, allow_pickle=False) as data:
        cams = data["cams"]
        boxes = np.split(data["gt_boxes_flat"], np.cumsum(data["gt_box_counts"])[:-1])
    meta, maps = folder / "metadata", folder / "scoremaps"
    meta.mkdir(parents=True)
    maps.mkdir()
    ids, labels, sizes, loc = [], [], [], []
    h, w = cams.shape[1:]
    for i in range(images):
        image_id = f"img{i:05d}"
        k = i % len(cams)
        np.save(maps / f"{image_id}.npy", cams[k].astype(np.float64))
        ids.append(image_id)
        labels.append(f"{image_id},0")
        sizes.append(f"{image_id},{w},{h}")
        loc += [f"{image_id},{','.join(str(float(v)) for v in box)}" for box in boxes[k]]
    for name, lines in (("image_ids", ids), ("class_labels", labels), ("image_sizes", sizes), ("localization", loc)):
        meta.joinpath(f"{name}.txt").write_text("\n".join(lines) + "\n")
    return meta, maps


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", type=Path, default=DEFAULT_NPZ, help="reference case (default: synth_200.npz)")
    parser.add_argument("--images", type=int, default=500, help="score maps to write and score (default: 500)")
    parser.add_argument("--interval", type=float, default=0.001, help="cam_curve_interval Δ (default: 0.001)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best is kept (default: 2)")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    print(f"{args.images} maps from {args.npz.name}, Δ = {args.interval:g}; load average at start: "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        meta, maps = _write_layout(args.npz, Path(tmp), args.images)
        out = Path(tmp) / "out"
        plain = [sys.executable, "-c", PLAIN.format(tests=str(ROOT / "tests"), meta=str(meta), maps=str(maps),
                                                    interval=args.interval)]  # fmt: skip
        wsol = [*WSOL, "evaluate", "--metadata", str(meta), "--scoremaps", str(maps), "--metrics", "boxes",
                "--cam-curve-interval", str(args.interval), "--no-progress", "--out", str(out)]  # fmt: skip
        check = [sys.executable, "-c", "import sys, runpy; sys.argv = ['wsol'] + sys.argv[1:]; "
                 "from wsol.cli import main; code = main(sys.argv[1:]); "
                 "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)", *wsol[3:]]  # fmt: skip
        _timed(check, env)  # warm-up (numba cache, page cache) and the no-torch check
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, command in (("plain", plain), ("wsol", wsol), ("help", [*WSOL, "--help"])):
                seconds, stdout = _timed(command, env)
                best[name] = min(best.get(name, np.inf), seconds)
                if name == "plain":
                    plain_value = float(stdout.strip().splitlines()[-1])
        ours = json.loads((out / "metrics.json").read_text())["MaxBoxAccV2"]["value"]
        assert abs(ours - plain_value) < 1e-9, (ours, plain_value)
    n = args.images
    print(f"plain loop process:  {best['plain']:7.2f} s ({best['plain'] / n * 1e3:.1f} ms/image)")
    print(f"wsol evaluate:       {best['wsol']:7.2f} s ({best['wsol'] / n * 1e3:.1f} ms/image), no torch imported")
    print(f"wsol --help:         {best['help']:7.2f} s")
    print(f"ratio plain / wsol evaluate, whole process: {best['plain'] / best['wsol']:.1f}x (MaxBoxAccV2 {ours:.2f})")


if __name__ == "__main__":
    main()
