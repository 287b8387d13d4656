"""Training-step time of SEAM (and MixUp-CAM) relative to plain CAM, measured in one run.

A step is ``module.loss(batch)`` + backward + SGD update. SEAM runs two branches; with its default
rescale-0.3 transform the second branch sees 9 % of the pixels, so its cost is expected well under 2x;
the ``flip`` row shows the full two-branch cost. Methods are interleaved round by round; the median and the
minimum ratios are reported.

    python benchmarks/seam_step.py --batch-size 64 --image-size 64 --steps 10
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from interleaved import add_step_options, print_ratios, random_batch, setup, time_steps

from wsol.methods import CAM
from wsol.methods.base import WSOLModule
from wsol.methods.mixup_cam import MixUpCAM
from wsol.methods.seam import SEAM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet10")
    add_step_options(parser)
    args = parser.parse_args()
    setup(args)

    common = {"backbone": args.backbone, "num_classes": args.num_classes, "scale_lr": False}
    builders: dict[str, Callable[[], WSOLModule]] = {
        "cam": lambda: CAM(**common),
        "seam (rescale 0.3)": lambda: SEAM(**common),
        "seam (flip)": lambda: SEAM(transform="flip", **common),
        "mixup_cam": lambda: MixUpCAM(**common),
    }
    modules = {name: build().train() for name, build in builders.items()}
    batch = random_batch(args.batch_size, args.image_size, args.num_classes)
    times = time_steps(modules, batch, args.steps, args.warmup, lambda m, b: m.loss(b)[0])
    heading = f"backbone={args.backbone} batch={args.batch_size} size={args.image_size} steps={args.steps}"
    print_ratios(times, "cam", heading)


if __name__ == "__main__":
    main()
