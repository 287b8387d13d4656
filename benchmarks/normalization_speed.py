"""Per-image cost of each score-map normalisation against min-max, measured in one run.

Kim et al. ("Normalization Matters in Weakly Supervised Object Localization", ICCV 2021, arXiv 2107.13221)
compare min-max, max, PaS and IVR; :mod:`wsol.metrics.normalization` implements them in numpy and torch.
This script times, per image, on ``--images`` seeded random raw maps (N(0, 1), any sign) in float64, handed
over in batches of ``--batch-size`` as a data loader would (500 maps of 224 x 224 in one array are 200 MB,
which would measure memory bandwidth rather than the rules):

* ``pipeline``: the whole step from a raw CAM at feature resolution (``--cam-size``, 14 by default) to a
  ``--size`` score map (224 by default): bicubic upsampling, then the rule —
  :func:`wsol.metrics.prepare_scoremaps_numpy` (cv2, the reference's own path) and
  :func:`wsol.metrics.prepare_scoremaps` (torch), one call per batch;
* ``normalise only``: the rule alone on maps already at ``--size`` —
  :func:`wsol.metrics.normalize_scoremaps` and :func:`wsol.metrics.normalize_scoremaps_torch`.

The time per image is the time of all batches divided by ``--images``.

Every rule's ratio is against ``minmax`` timed in the same run on the same maps and the same path. The
variants are interleaved round by round so background load hits them alike, and the best of ``--rounds``
rounds is kept. OpenCV and torch run single-threaded (``--threads``), so the figures are one core's.
Target: at most 1.2x min-max for the pipeline. Before timing, the torch path is checked against the numpy
path (every rule, all maps, to 1e-9).

    python benchmarks/normalization_speed.py --images 500 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch

from wsol.metrics import (
    NORMALIZATIONS,
    normalize_scoremaps,
    normalize_scoremaps_torch,
    prepare_scoremaps,
    prepare_scoremaps_numpy,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="random maps timed (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="maps per call (default: %(default)s)")
    parser.add_argument("--size", type=int, default=224, help="score-map side (default: %(default)s)")
    parser.add_argument("--cam-size", type=int, default=14, help="raw CAM side before upsampling (default: 14)")
    parser.add_argument("--percentile", type=float, default=0.6, help="IVR's percentile (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds, best kept (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV and torch threads (default: %(default)s)")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    cams = rng.standard_normal((args.images, args.cam_size, args.cam_size))
    full = rng.standard_normal((args.images, args.size, args.size))
    cams_t, full_t = torch.from_numpy(cams), torch.from_numpy(full)
    size = (args.size, args.size)
    p = args.percentile

    for rule in NORMALIZATIONS:  # same numbers on both paths (this also warms every code path up)
        a = prepare_scoremaps_numpy(cams, size, rule, p)
        b = prepare_scoremaps(cams_t, size, rule, p).numpy()
        assert np.abs(a - b).max() <= 1e-9, rule
        c = normalize_scoremaps(full, rule, p)
        d = normalize_scoremaps_torch(full_t, rule, p).numpy()
        assert np.abs(c - d).max() <= 1e-9, rule

    # (what, path) -> (one call on a batch of maps under a rule, the maps)
    variants: dict[tuple[str, str], tuple[Callable[[Any, str], object], Any]] = {
        ("pipeline", "numpy (cv2)"): (lambda m, rule: prepare_scoremaps_numpy(m, size, rule, p), cams),
        ("pipeline", "torch"): (lambda m, rule: prepare_scoremaps(m, size, rule, p), cams_t),
        ("normalise only", "numpy"): (lambda m, rule: normalize_scoremaps(m, rule, p), full),
        ("normalise only", "torch"): (lambda m, rule: normalize_scoremaps_torch(m, rule, p), full_t),
    }

    def timed(key: tuple[str, str], rule: str) -> float:
        fn, maps = variants[key]
        start = time.perf_counter()
        for i in range(0, args.images, args.batch_size):
            fn(maps[i : i + args.batch_size], rule)
        return time.perf_counter() - start

    best = {(key, rule): np.inf for key in variants for rule in NORMALIZATIONS}
    print(
        f"{args.images} random maps in batches of {args.batch_size}, {args.cam_size}x{args.cam_size} -> "
        f"{args.size}x{args.size} float64, {args.threads} thread(s), best of {args.rounds} rounds"
    )
    print("load average at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    for _ in range(args.rounds):
        for key in variants:
            for rule in NORMALIZATIONS:
                best[key, rule] = min(best[key, rule], timed(key, rule))

    print(f"\n{'what':16s} {'path':12s} " + " ".join(f"{r:>15s}" for r in NORMALIZATIONS))
    for key in variants:
        base = best[key, "minmax"]
        cells = [f"{best[key, r] / args.images * 1e3:7.3f} ms {best[key, r] / base:4.2f}x" for r in NORMALIZATIONS]
        print(f"{key[0]:16s} {key[1]:12s} " + " ".join(f"{c:>15s}" for c in cells))
    print("(ms per image; ratio against minmax on the same path in this run)")
    print("load average at end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
