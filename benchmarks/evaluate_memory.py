"""Memory and time of ``wsol evaluate --npz`` on many maps: the archive is read map by map, never loaded whole.

Streams N float16 224x224 score maps (the ``synth_200.npz`` reference maps and boxes, repeated) into an
uncompressed ``.npz`` without holding them in RAM, then runs ``wsol evaluate --npz`` on it in a child process
and reports its wall time and peak resident memory (``getrusage``), beside the size of the maps on disk. A
baseline child that only imports the evaluator gives the fixed part of the memory.

``--compare`` also scores the same archive in two more children, one reading it map by map (as ``wsol evaluate``
does: the archive's checks and CRC pass included) and one with ``cams`` loaded whole first (``np.load``, included
in its time), and prints the per-map cost of each, their ratio (target <= 1.3) and both peak RSS.

    python benchmarks/evaluate_memory.py --images 50000 --workers 2
    python benchmarks/evaluate_memory.py --images 1000 --compare
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NPZ = (
    Path(os.environ.get("WSOL_REFERENCE", ROOT / ".." / "shared" / "reference" / "wsoleval")) / "synth_200.npz"
)


def write_npz(path: Path, source: Path, images: int, dtype: str = "float16") -> int:
    """Stream ``images`` maps into an uncompressed npz (maps repeated from ``source``); returns the maps' bytes."""
    with np.load(source, allow_pickle=False) as data:
        cams = data["cams"].astype(dtype)
        boxes = np.split(data["gt_boxes_flat"], np.cumsum(data["gt_box_counts"])[:-1])
    n_src = len(cams)
    index = np.arange(images) % n_src
    header = {"descr": np.lib.format.dtype_to_descr(cams.dtype), "fortran_order": False,
              "shape": (images, *cams.shape[1:])}  # fmt: skip
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        with archive.open("cams.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_2_0(member, header)
            for start in range(0, images, 1000):
                member.write(np.ascontiguousarray(cams[index[start : start + 1000]]).tobytes())
        rows = [boxes[i] for i in index]
        for name, array in (
            ("gt_boxes_flat", np.concatenate(rows).astype(np.float32)),
            ("gt_box_counts", np.array([len(r) for r in rows], np.int64)),
        ):
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return images * cams[0].nbytes


def _child(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process (run alone, so RUSAGE_CHILDREN is its own)."""
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, check=True)
    seconds, rss_kib = done.stdout.split()
    return float(seconds), float(rss_kib) / 1024


COMPARE = """
import resource, sys, time
import numpy as np
from wsol.evaluation import NpzSource, evaluate
from wsol.metrics import warm_up_kernels
warm_up_kernels()
path, mode, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
start = time.perf_counter()
source = NpzSource(path)
if mode == "whole":
    with np.load(path) as data:
        source._data["cams"] = data["cams"]
value = evaluate(source, metrics=["boxes"], cam_curve_interval=interval).boxes.modes["MaxBoxAccV2"].value
seconds = time.perf_counter() - start
print(seconds / len(source), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, value)
"""


def compare(path: Path, interval: float) -> None:
    """Per-map cost of reading the archive map by map against loading ``cams`` whole, each in a fresh process."""
    results = {}
    for mode in ("stream", "whole"):
        done = subprocess.run([sys.executable, "-c", COMPARE, str(path), mode, str(interval)], capture_output=True,
                              text=True, check=True)  # fmt: skip
        per_map, rss, value = (float(v) for v in done.stdout.split())
        results[mode] = (per_map, rss, value)
        print(f"{mode:6s}: {per_map * 1e3:.2f} ms/map, peak RSS {rss:.0f} MiB, MaxBoxAccV2 {value:.2f}")
    assert results["stream"][2] == results["whole"][2], "the two readings scored differently"
    print(f"map by map / loaded whole: {results['stream'][0] / results['whole'][0]:.2f}x per map (target <= 1.3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", type=Path, default=DEFAULT_NPZ, help="maps and boxes to repeat (synth_200.npz)")
    parser.add_argument("--images", type=int, default=50000, help="maps to write and score (default: 50000)")
    parser.add_argument("--workers", type=int, default=1, help="wsol evaluate --workers (default: 1)")
    parser.add_argument("--interval", type=float, default=0.001, help="cam_curve_interval Δ (default: 0.001)")
    parser.add_argument("--compare", action="store_true", help="also time map-by-map against loaded-whole reading")
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {args.workers} worker(s)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "maps.npz"
        start = time.perf_counter()
        maps_bytes = write_npz(path, args.npz, args.images)
        print(f"wrote {args.images} float16 maps: {maps_bytes / 2**30:.2f} GiB in {time.perf_counter() - start:.0f} s")
        base_s, base_rss = _child([sys.executable, "-c", "import wsol.cli, wsol.evaluation, wsol.metrics"])
        command = [sys.executable, "-m", "wsol.cli", "evaluate", "--npz", str(path), "--metrics", "boxes",
                   "--cam-curve-interval", str(args.interval), "--workers", str(args.workers), "--no-progress",
                   "--out", str(Path(tmp) / "out")]  # fmt: skip
        seconds, rss = _child(command)
        if args.compare:
            compare(path, args.interval)
    scale = 50000 / args.images
    print(f"imports alone: {base_rss:.0f} MiB peak")
    print(f"wsol evaluate --npz: {seconds:.1f} s, peak RSS {rss:.0f} MiB (largest process; maps on disk "
          f"{maps_bytes / 2**20:.0f} MiB)")  # fmt: skip
    if args.images != 50000:
        print(f"per 50k maps (linear in time): {seconds * scale:.0f} s")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
