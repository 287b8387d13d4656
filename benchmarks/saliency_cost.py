"""Per-image cost of each label-free saliency cue at the study's 64 px, against MBD and the centre prior.

Times every registered cue (:func:`wsol.saliency.list_cues`: MBD, MB+, spectral residual) one image at a time,
as the study computes them, on ``--images`` images: the first images of a Tiny ImageNet-layout folder's val split
(``--data``), or seeded random images (the cues' cost does not depend on the content). Baselines in the same run:
the centre-Gaussian prior map (:func:`wsol.evaluation.priors.center_gaussian`, what the centre reference row costs
per image if it were made per image) and MBD. The variants are interleaved round by round so background load hits
them alike, and the best of ``--rounds`` rounds is kept; OpenCV runs single-threaded (``--threads``). numba's
compilation is done before timing.

    python benchmarks/saliency_cost.py --images 500 --rounds 3
    python benchmarks/saliency_cost.py --data $WSOL_DATA/tiny_imagenet_10
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import cv2
import numpy as np

from wsol.evaluation.priors import center_gaussian
from wsol.saliency import get_cue, list_cues


def _images(args: argparse.Namespace) -> list[np.ndarray]:
    if args.data:
        from PIL import Image

        from wsol.data import read_dataset

        dataset = read_dataset("tiny_imagenet", args.data, "val")
        out = []
        for i in range(min(args.images, len(dataset))):
            image = dataset.load(i).image
            if image.shape[:2] != (args.size, args.size):
                image = np.asarray(Image.fromarray(image).resize((args.size, args.size), Image.BILINEAR))
            out.append(image)
        return out
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.images)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="images timed (default: %(default)s)")
    parser.add_argument("--size", type=int, default=64, help="image side (default: %(default)s)")
    parser.add_argument("--data", default=None, help="Tiny ImageNet-layout folder (default: random images)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, best kept (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads (default: %(default)s)")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    images = _images(args)
    side = images[0].shape[0]
    variants: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "center prior": lambda image: center_gaussian(side, side),
        **{name: get_cue(name) for name in list_cues()},
    }
    for run in variants.values():
        run(images[0])  # numba compiles (or loads its cache) here, not in the timing
    best = dict.fromkeys(variants, np.inf)
    for _ in range(args.rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            for image in images:
                run(image)
            best[name] = min(best[name], (time.perf_counter() - start) / len(images))
    source = args.data or "random images"
    print(f"{len(images)} images of {side} px ({source}), best of {args.rounds} rounds, {args.threads} thread(s)")
    print(f"{'map':<20} {'ms/image':>9} {'x centre prior':>15} {'x MBD':>7}")
    for name, seconds in best.items():
        print(f"{name:<20} {seconds * 1e3:>9.3f} {seconds / best['center prior']:>15.1f} {seconds / best['mbd']:>7.2f}")


if __name__ == "__main__":
    main()
