"""``wsol evaluate``: score anyone's CAMs with the WSOL protocol (MaxBoxAcc, MaxBoxAccV2, PxAP)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wsol.atomic import write_text
from wsol.commands.arguments import add_normalization_arguments, check_normalization_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score CAMs with the WSOL protocol: MaxBoxAcc, MaxBoxAccV2, Top-1 Loc, PxAP (reference-exact)",
        description=(
            "Score score maps exactly as clovaai/wsolevaluation does (same numbers, every curve point). "
            "Input is either the reference's layout (--metadata split folder with image_ids.txt, "
            "class_labels.txt, image_sizes.txt, localization.txt, and --scoremaps with <image_id>.npy files) "
            "or one --npz with the keys cams, gt_boxes_flat, gt_box_counts[, image_sizes, gt_masks, cls_correct]. "
            "Score maps must be float arrays in [0, 1]; constant or all-NaN maps count as all-zero maps. "
            "With --normalization the maps are raw CAMs (any sign and range) and each is normalised first; "
            "raw maps with NaN or inf then count as all-zero maps."
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--metadata", type=Path, metavar="DIR", help="metadata split folder (reference layout)")
    source.add_argument("--npz", type=Path, metavar="FILE", help="one .npz with cams and GT (reference cases)")
    p.add_argument(
        "--scoremaps", type=Path, metavar="DIR", help="folder of <image_id>.npy score maps (with --metadata)"
    )
    p.add_argument(
        "--mask-root", type=Path, metavar="DIR", help="folder mask paths are relative to (default: the metadata folder)"
    )
    p.add_argument(
        "--predictions", type=Path, metavar="FILE", help="image_id,predicted_label lines, for Top-1 Loc (--metadata)"
    )
    p.add_argument(
        "--cam-curve-interval",
        type=float,
        default=0.001,
        metavar="Δ",
        help="threshold grid step: 0.001 as in the papers (default) or 0.01 as in the reference's CLI",
    )
    add_normalization_arguments(
        p, default=None, what="read the maps as raw CAMs and normalise each by this rule (default: they are score maps)"
    )
    p.add_argument(
        "--upsample",
        nargs="?",
        type=int,
        const=224,
        default=None,
        metavar="S",
        help="the maps are raw and of any size (e.g. 7x7 from pytorch-grad-cam or torch-cam): upsample each to "
        "S x S the protocol's way (float64 bicubic) and normalise it (--normalization, min-max by default); "
        "S defaults to 224 and must be >= 16; --npz boxes then need image_sizes unless the maps are S x S already",
    )
    p.add_argument("--iou-thresholds", default="30,50,70", metavar="LIST", help="IoU thresholds in percent")
    p.add_argument("--metrics", default=None, metavar="LIST", help="boxes,masks (default: what the GT allows)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="processes to spread the images over")
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="write OUT/metrics.json (results and curves; a .json path: deprecated)"
    )
    p.add_argument(
        "--plots",
        nargs="?",
        const=True,
        default=None,
        metavar="DIR",
        help="also write box_accuracy.png and pixel_pr.png into OUT (a DIR of their own is deprecated)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from err


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from wsol.evaluation import MetadataSource, NpzSource, evaluate

    check_normalization_arguments(args)
    # Where the results go: OUT/metrics.json, or the deprecated --out FILE.json (its folder holds the plots).
    json_path = out_dir = None
    if args.out is not None and args.out.suffix == ".json":
        print(f"wsol evaluate: note: --out {args.out} (a file) is deprecated; give a folder (OUT/metrics.json)",
              file=sys.stderr)  # fmt: skip
        json_path, out_dir = args.out, args.out.parent
    elif args.out is not None:
        if args.out.is_file():
            raise ValueError(f"--out {args.out} is a file; a folder is expected (OUT/metrics.json is written there)")
        json_path, out_dir = args.out / "metrics.json", args.out
    plots_dir = None
    if args.plots is True:
        if out_dir is None:
            raise ValueError("--plots writes into the --out folder: give --out DIR")
        plots_dir = out_dir
    elif args.plots is not None:
        print("wsol evaluate: note: --plots DIR is deprecated; give --out DIR --plots", file=sys.stderr)
        plots_dir = Path(args.plots)
    normalization = {"normalization": args.normalization, "percentile": args.percentile, "upsample": args.upsample}
    if args.metadata is not None:
        if args.scoremaps is None:
            raise ValueError("--metadata needs --scoremaps (the folder of <image_id>.npy score maps)")
        source = MetadataSource(args.metadata, args.scoremaps, args.mask_root, args.predictions, **normalization)
    else:
        if args.scoremaps is not None or args.predictions is not None or args.mask_root is not None:
            raise ValueError("--scoremaps, --mask-root and --predictions go with --metadata, not --npz")
        source = NpzSource(args.npz, **normalization)
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    result = evaluate(
        source,
        metrics=metrics,
        cam_curve_interval=args.cam_curve_interval,
        iou_thresholds=_ints(args.iou_thresholds, "--iou-thresholds"),
        workers=args.workers,
        progress=not args.no_progress,
    )

    if result.degenerate:
        shown = ", ".join(repr(i) for i in result.degenerate[:5]) + (", ..." if len(result.degenerate) > 5 else "")
        what = "constant or all-NaN"
        if source.normalization is not None:
            what = f"constant, with NaN/inf or all zero after {source.normalization} normalisation"
        print(
            f"wsol evaluate: warning: {len(result.degenerate)} score map(s) {what}, evaluated as "
            f"all-zero maps (docs/protocol.md §1.4): {shown}",
            file=sys.stderr,
        )
    rule = ""
    if source.normalization is not None:
        from wsol.metrics.normalization import get_normalization

        rule = f", raw maps normalised by {get_normalization(source.normalization).label(args.percentile)}"
    if args.upsample is not None:
        rule += f" after bicubic upsampling to {args.upsample}x{args.upsample}"
    print(f"{len(source)} images, cam_curve_interval {args.cam_curve_interval:g}{rule}")
    if result.boxes is not None:
        for name, mode in result.boxes.modes.items():
            per_iou = ", ".join(f"IoU{t} {v:.2f} (τ={mode.best_cam_threshold[t]:.3f})" for t, v in mode.per_iou.items())
            print(f"{name:12s} {mode.value:7.2f}   {per_iou}")
            if mode.top1 is not None:
                print(f"{'  Top-1 Loc':12s} {mode.top1_value:7.2f}   (wsol extension)")
    if result.masks is not None:
        print(f"{'PxAP':12s} {result.masks.pxap:7.2f}")
        print(
            f"{'MaxPIoU':12s} {result.masks.piou:7.2f}   at score >= {result.masks.piou_threshold:g} (wsol extension)"
        )
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_text(json_path, json.dumps(result.to_dict(), indent=1, allow_nan=False, default=_json_default))
        print(f"results: {json_path}")
    if plots_dir is not None:
        from wsol.plots import plot_box_accuracy, plot_pixel_pr

        plots_dir.mkdir(parents=True, exist_ok=True)
        if result.boxes is not None:
            print(f"plot: {plot_box_accuracy(result.boxes, plots_dir / 'box_accuracy.png')}")
        if result.masks is not None:
            print(f"plot: {plot_pixel_pr(result.masks, plots_dir / 'pixel_pr.png')}")
    return 0


def _json_default(value: object) -> object:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
