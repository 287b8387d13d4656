"""``wsol pseudo-masks``: WSSS pseudo-masks from a trained model's CAMs, as PNGs and COCO RLE, scored by mIoU."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from wsol.commands.arguments import add_deprecated, add_device_argument, parse_data, parse_json_option, resolve_device


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pseudo-masks",
        help="turn a model's CAMs into semantic-segmentation pseudo-masks (PNG + COCO RLE) and score them",
        description=(
            "Multi-scale + flip CAM inference (SEAM's protocol: maps of the image's classes, min-max normalised, "
            "argmax against a constant background score), optional PCM refinement of a SEAM model. Writes "
            "OUT/masks/*.png (indexed, VOC palette, 255 = ignore), OUT/pseudo_masks.json (COCO RLE), "
            "OUT/cams/*.npz, and, when the data has GT masks, OUT/metrics.json (mIoU, per-class IoU, precision, "
            "recall, F1, FPR), OUT/bg_sweep.png (with --sweep) and OUT/grid.png. Rerunning with the same OUT "
            "skips the images already done."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="a Lightning checkpoint of a wsol.methods class")
    p.add_argument(
        "--data",
        required=True,
        help="dataset NAME[=PATH]: a reader name (e.g. synthetic, coco, voc) and its folder (default: the reader's, "
        "e.g. $WSOL_DATA/coco)",
    )
    add_deprecated(p, "--root", "root", "use --data NAME=PATH", takes_value=True)
    p.add_argument("--split", default="train", help="split to label (default: %(default)s, SEAM's protocol)")
    p.add_argument("--data-options", default=None, help="JSON options of the reader, e.g. '{\"num_classes\": 3}'")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--scales", default="0.5,1,1.5,2", help="comma-separated input scales (default: %(default)s)")
    p.add_argument("--no-flip", action="store_true", help="skip the flipped pass of each scale")
    p.add_argument("--base-size", type=int, default=None, help="resize the longer side to this before scaling")
    p.add_argument(
        "--refine", choices=("auto", "none", "pcm"), default="auto", help="PCM refinement (auto: for SEAM models)"
    )
    p.add_argument(
        "--labels", choices=("gt", "pred"), default="gt", help="classes allowed per image (default: %(default)s)"
    )
    p.add_argument("--class-threshold", type=float, default=0.5, help="sigmoid threshold of --labels pred")
    p.add_argument("--bg-threshold", type=float, default=0.26, help="background score (default: %(default)s)")
    p.add_argument(
        "--sweep",
        nargs="?",
        const="0:0.6:0.01",
        default=None,
        metavar="START:STOP:STEP",
        help="score background thresholds START, START+STEP, ... < STOP and use the best (default range 0:0.6:0.01, "
        "SEAM's curve; picks the threshold with GT masks, so say so when reporting)",
    )
    p.add_argument("--ignore-threshold", type=float, default=None, help="mark pixels between it and the bg score 255")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--grid", type=int, default=8, help="images in OUT/grid.png (default: %(default)s, 0: none)")
    add_device_argument(p)
    p.set_defaults(func=run, root=None)


def parse_scales(text: str) -> tuple[float, ...]:
    """``"0.5,1,1.5"`` -> ``(0.5, 1.0, 1.5)``."""
    try:
        scales = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        scales = ()
    if not scales or min(scales) <= 0:
        raise ValueError(f"--scales must be comma-separated positive numbers, got {text!r}")
    return scales


def parse_sweep(text: str) -> tuple[float, ...]:
    """``"0:0.6:0.01"`` -> ``(0.0, 0.01, ..., 0.59)``, rounded to the step's decimals."""
    try:
        start, stop, step = (float(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"--sweep must be START:STOP:STEP, got {text!r}") from None
    if step <= 0 or stop <= start:
        raise ValueError(f"--sweep needs STEP > 0 and STOP > START, got {text!r}")
    count = int(round((stop - start) / step))
    values = [start + i * step for i in range(count + 1)]
    return tuple(round(v, 6) for v in values if v < stop - 1e-9)


def run(args: argparse.Namespace) -> int:

    from wsol.data import read_dataset
    from wsol.methods import load_model
    from wsol.wsss import PseudoMaskConfig, generate_pseudo_masks
    from wsol.wsss.store import file_digest

    options = parse_json_option(args.data_options, "--data-options")
    name, root = parse_data(args.data)
    root = root or args.root
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    config = PseudoMaskConfig(
        scales=parse_scales(args.scales),
        flip=not args.no_flip,
        refine=args.refine,
        labels=args.labels,
        class_threshold=args.class_threshold,
        base_size=args.base_size,
        bg_threshold=args.bg_threshold,
        sweep=parse_sweep(args.sweep) if args.sweep else None,
        ignore_threshold=args.ignore_threshold,
    )
    model = load_model(args.checkpoint)
    method = type(model).__name__
    model.to(resolve_device(args.device))
    dataset = read_dataset(name, root, args.split, **options)
    result = generate_pseudo_masks(
        model,
        dataset,
        args.out,
        config,
        # Content, not names: another checkpoint under the same name, or another root or reader option,
        # must never reuse stored maps.
        source={
            "checkpoint": Path(args.checkpoint).name,
            "checkpoint_sha256": file_digest(args.checkpoint),
            "method": method,
            "data": name,
            "root": str(Path(root).resolve()) if root else None,
            "WSOL_DATA": None if root else os.environ.get("WSOL_DATA"),
            "data_options": options,
            "split": args.split,
        },
        grid_images=args.grid,
        limit=args.limit,
    )
    print(
        f"{result.num_images} images: maps computed for {result.computed}, reused {result.reused}; "
        f"{result.masks_written} PNGs written (background threshold {result.bg_threshold:g}) in {result.seconds:.1f} s"
    )
    if result.sweep is not None:
        sweep = result.sweep
        print(f"sweep: best background threshold {sweep['best_threshold']:g}, mIoU {sweep['best_mIoU']:.2f}")
    if result.report is not None:
        scores = result.report["scores"]
        line = f"mIoU {scores['mIoU']:.2f} (all-background {result.report['all_background']['mIoU']:.2f})"
        if scores["ignored_fraction"]:
            line += f", {100 * scores['ignored_fraction']:.1f}% of the pixels marked ignore and not scored"
        print(line)
    else:
        print("no GT masks in the data: nothing scored")
    for name, path in result.files.items():
        print(f"{name}: {path}")
    return 0
