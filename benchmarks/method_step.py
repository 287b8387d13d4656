"""Training-step time of every small-data study row relative to the plain CAM, measured in one run.

Each row is built exactly as ``wsol study small-data`` builds it (ResNet-10, width 32, 4x4 maps at 64 px,
the row's own method and options), in float32. A step is ``module.loss(batch)`` + the L1/L2 penalty +
backward + SGD update on one batch of random images with one random box each (the few-shot row reads the
boxes). Rows are interleaved round by round, so a load change hits all of them alike; the median and the
minimum ratios against CAM are printed.

    python benchmarks/method_step.py --rows cam,has,acol,spg,adl,fsl,seam --steps 10
"""

from __future__ import annotations

import argparse

from interleaved import add_step_options, print_ratios, random_batch, setup, time_steps

from wsol.study.grid import BASE_CONFIG, SMALL_DATA_METHODS, build_model, merge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="cam,has,acol,spg,adl,fsl,mixup_cam,seam")
    add_step_options(parser)
    args = parser.parse_args()
    setup(args)
    rows = {row.name: row for row in SMALL_DATA_METHODS}
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    unknown = [n for n in names if n not in rows]
    if unknown or "cam" not in names:
        parser.error(f"--rows must name study rows including cam; unknown: {unknown}")
    modules = {}
    for name in names:
        overrides = next(iter(rows[name].variants.values()))
        config = merge(merge(BASE_CONFIG, overrides), {"channels_last": False, "precision": "32-true"})
        modules[name] = build_model(config, args.num_classes, seed=0).train()
    batch = random_batch(args.batch_size, args.image_size, args.num_classes, boxes=True)
    times = time_steps(modules, batch, args.steps, args.warmup, lambda m, b: m.loss(b)[0] + m.regularization())
    print_ratios(times, "cam", f"batch={args.batch_size} size={args.image_size} steps={args.steps} (float32)", "row")


if __name__ == "__main__":
    main()
