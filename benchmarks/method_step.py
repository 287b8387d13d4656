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
import statistics
import time

import torch

from wsol.study.grid import BASE_CONFIG, SMALL_DATA_METHODS, build_model, merge


def _batch(size: int, image_size: int, num_classes: int) -> dict:
    labels = torch.randint(num_classes, (size,))
    boxes = []
    for _ in range(size):
        x0, y0 = torch.randint(0, image_size // 2, (2,)).tolist()
        boxes.append(torch.tensor([[x0, y0, x0 + image_size // 3, y0 + image_size // 3]]))
    return {
        "image": torch.randn(size, 3, image_size, image_size),
        "target": torch.eye(num_classes)[labels],
        "label": labels,
        "boxes": boxes,
        "image_id": [f"random/{i}" for i in range(size)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="cam,has,acol,spg,adl,fsl,mixup_cam,seam")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
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
    optims = {name: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for name, m in modules.items()}
    batch = _batch(args.batch_size, args.image_size, args.num_classes)
    times: dict[str, list[float]] = {name: [] for name in modules}
    for round_ in range(args.warmup + args.steps):
        for name, module in modules.items():
            t0 = time.perf_counter()
            loss = module.loss(batch)[0] + module.regularization()
            optims[name].zero_grad(set_to_none=True)
            loss.backward()
            optims[name].step()
            if round_ >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    base, base_min = statistics.median(times["cam"]), min(times["cam"])
    print(
        f"batch={args.batch_size} size={args.image_size} steps={args.steps} threads={torch.get_num_threads()} "
        "(float32; CPU figures are noisy when other work shares the cores)"
    )
    print(f"{'row':<12} {'step ms':>9} {'vs CAM':>7} {'min vs CAM':>10}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<12} {med * 1e3:9.1f} {med / base:7.2f} {min(values) / base_min:10.2f}")


if __name__ == "__main__":
    main()
