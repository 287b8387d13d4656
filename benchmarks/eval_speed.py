"""Speed of the WSOL evaluators against a plain per-threshold implementation, measured in one run.

Times MaxBoxAccV2 at Δ = 0.001 and PxAP per image on ``synth_200.npz`` (the reference cases), for:

* ``plain``: the reference's loops as written in clovaai/wsolevaluation (one ``cv2.threshold`` +
  ``cv2.findContours`` per threshold and image, ``np.histogram`` per image), from
  ``tests/plain_wsoleval.py``; the baseline of every ratio;
* ``wsol``: :mod:`wsol.metrics` accumulators in this process;
* ``wsol --workers N``: ``wsol evaluate``'s driver spreading the images over N processes (end to end:
  process start, handing the data to the workers, merging);
* ``both box modes``: MaxBoxAcc (v1) and MaxBoxAccV2 together, ``BoxAccumulator``'s default (for
  information; its ratio is still against the plain V2 loop).

The kernels are compiled by numba on first use and cached on disk; the first call's time (compilation,
or loading the cache) is printed apart and kept out of the rounds.

Every variant's counts are checked to be identical to the baseline's before anything is printed.
OpenCV runs single-threaded in every variant, so "single process" means one core. Variants are
interleaved round by round so that background load hits them alike; the best round is reported.
For scale: the reference itself took 81 ms (MaxBoxAccV2) and 3.2 ms (PxAP) per image single-process
on a 2-core machine of this kind.

    python benchmarks/eval_speed.py --workers 2 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the plain implementation is a test helper, not library code

from plain_wsoleval import plain_box_curves, plain_pxap, plain_pxap_histograms  # noqa: E402

from wsol.evaluation import NpzSource, evaluate  # noqa: E402
from wsol.metrics import BoxAccumulator, MaskAccumulator, warm_up_kernels  # noqa: E402

DEFAULT_NPZ = (
    Path(os.environ.get("WSOL_REFERENCE", ROOT / ".." / "shared" / "reference" / "wsoleval")) / "synth_200.npz"
)


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", type=Path, default=DEFAULT_NPZ, help="reference case (default: synth_200.npz)")
    parser.add_argument("--interval", type=float, default=0.001, help="cam_curve_interval Δ")
    parser.add_argument("--workers", type=int, default=2, help="processes for the parallel variant")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of the wsol variants (best is kept)")
    parser.add_argument("--plain-images", type=int, default=None, help="time the plain box loop on the first N images")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    with np.load(args.npz) as data:
        cams = data["cams"]
        gts = np.split(data["gt_boxes_flat"], np.cumsum(data["gt_box_counts"])[:-1])
        masks = data["gt_masks"]
    n = len(cams)
    n_plain = min(args.plain_images or n, n)
    source = NpzSource(args.npz)
    print(f"{args.npz.name}: {n} maps {cams.shape[1]}x{cams.shape[2]}, Δ = {args.interval:g}, {args.workers} workers")
    print("load average at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))

    # First calls: numba compiles the kernels (or loads them from its cache); not part of any round.
    t_first, _ = _timed(warm_up_kernels)
    print(f"kernels ready (numba compile or cache load): {t_first:.2f} s")

    # Baselines (slow; timed once).
    t_plain_box, (plain_counts, _) = _timed(
        lambda: plain_box_curves(cams[:n_plain], gts[:n_plain], args.interval, multi_contour=True)
    )
    t_plain_px, (true, false) = _timed(lambda: plain_pxap_histograms(cams, masks, args.interval))
    plain_value = plain_pxap(true, false)

    def boxes_here() -> BoxAccumulator:
        acc = BoxAccumulator(args.interval, modes=("MaxBoxAccV2",))
        for i in range(n):  # one image at a time, as in the plain loop
            acc.update(cams[i : i + 1], gts[i : i + 1])
        return acc

    def masks_here() -> MaskAccumulator:
        acc = MaskAccumulator(args.interval)
        for i in range(n):
            acc.update(cams[i : i + 1], masks[i : i + 1])
        return acc

    def both_modes_here() -> BoxAccumulator:
        acc = BoxAccumulator(args.interval)  # the default: MaxBoxAcc (v1) and MaxBoxAccV2 from one analysis
        for i in range(n):
            acc.update(cams[i : i + 1], gts[i : i + 1])
        return acc

    def boxes_parallel():
        return evaluate(source, ["boxes"], args.interval, box_modes=("MaxBoxAccV2",), workers=args.workers)

    def masks_parallel():
        return evaluate(source, ["masks"], args.interval, workers=args.workers)

    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, fn in (
            ("box", boxes_here),
            ("box_both", both_modes_here),
            ("box_par", boxes_parallel),
            ("px", masks_here),
            ("px_par", masks_parallel),
        ):
            seconds, out = _timed(fn)
            best[name] = min(best.get(name, np.inf), seconds)
            # Identical numbers: every BoxAcc(τ) count, both histograms, PxAP to the last digit.
            if name == "box":
                single = out.compute().modes["MaxBoxAccV2"]
                box_counts = out.correct["MaxBoxAccV2"]
                if n_plain == n:
                    for i, iou in enumerate(out.iou_thresholds):
                        assert np.array_equal(out.correct["MaxBoxAccV2"][i], plain_counts[iou]), f"IoU {iou} differs"
            elif name == "box_both":
                assert np.array_equal(out.correct["MaxBoxAccV2"], box_counts)
            elif name == "box_par":
                parallel = out.boxes.modes["MaxBoxAccV2"]
                assert all(np.array_equal(parallel.curves[t], single.curves[t]) for t in single.curves)
            elif name == "px":
                assert np.array_equal(out.gt_true, true) and np.array_equal(out.gt_false, false)
                assert out.compute().pxap == plain_value
            else:
                assert out.masks.pxap == plain_value

    rows = [
        ("MaxBoxAccV2", "plain (1 findContours per τ)", t_plain_box / n_plain, t_plain_box / n_plain),
        ("MaxBoxAccV2", "wsol, 1 process", best["box"] / n, t_plain_box / n_plain),
        ("MaxBoxAccV2", f"wsol --workers {args.workers}", best["box_par"] / n, t_plain_box / n_plain),
        ("MaxBoxAcc+V2", "wsol, 1 process, both box modes", best["box_both"] / n, t_plain_box / n_plain),
        ("PxAP", "plain (np.histogram per image)", t_plain_px / n, t_plain_px / n),
        ("PxAP", "wsol, 1 process", best["px"] / n, t_plain_px / n),
        ("PxAP", f"wsol --workers {args.workers}", best["px_par"] / n, t_plain_px / n),
    ]
    print(f"\n{'metric':12s} {'variant':32s} {'ms/image':>9s} {'vs plain':>9s}")
    for metric, variant, seconds, baseline in rows:
        print(f"{metric:12s} {variant:32s} {seconds * 1e3:9.3f} {baseline / seconds:8.1f}x")
    print("\nidentical numbers: every BoxAcc(τ) count and both PxAP histograms equal the plain implementation's")
    print("load average at end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    if n_plain < n:
        print(f"(plain box loop timed on the first {n_plain} images)")


if __name__ == "__main__":
    main()
