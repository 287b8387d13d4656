"""``wsol leaderboard``: CAM methods x models x datasets under one protocol, with tables and pictures."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from wsol.commands.arguments import (
        add_data_arguments,
        add_deprecated,
        add_device_argument,
        add_model_arguments,
        add_normalization_arguments,
    )

    p = subparsers.add_parser(
        "leaderboard",
        help="compare CAM methods and models on localization (MaxBoxAccV2, Top-1 Loc, PxAP) with pictures",
        description=(
            "Run every CAM method on every model and dataset under the reference protocol (GT-class maps, "
            "squash to SIZE, bicubic float64 upsampling, min-max or the --normalization chosen), score them "
            "(MaxBoxAccV2 with per-IoU values, MaxBoxAcc, Top-1 Loc, PxAP where masks exist, seconds per "
            "image) and write OUT/leaderboard.{md,csv,json}, BoxAcc(tau) curves per method and an overlay "
            "grid of the same images under every method."
        ),
    )
    p.add_argument(
        "--cam-methods",
        default="cam,gradcam,gradcampp,xgradcam,layercam,eigencam",
        help="comma-separated CAM methods (default: %(default)s; scorecam is slow: one pass per channel)",
    )
    add_deprecated(p, "--methods", "cam_methods", "use --cam-methods", takes_value=True)
    add_model_arguments(p, several=True)
    add_data_arguments(p, several=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--cam-curve-interval", type=float, default=0.001, help="threshold step (0.001: the papers' grid; default)"
    )
    add_normalization_arguments(p, what="per-map normalisation of every method's upsampled maps")
    add_device_argument(p)
    p.add_argument("--overlay-images", type=int, default=6, help="images in the overlay grid (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wsol.cams.leaderboard import ModelSpec, run_leaderboard
    from wsol.commands.arguments import (
        check_normalization_arguments,
        parse_data_spec,
        parse_json_option,
        resolve_device,
    )

    check_normalization_arguments(args)
    methods = [m.strip() for m in args.cam_methods.split(",") if m.strip()]
    options = parse_json_option(args.data_options, "--data-options")
    datasets = [parse_data_spec(d.strip(), args.split, options) for d in args.data.split(",") if d.strip()]
    backbone_kwargs = parse_json_option(args.backbone_kwargs, "--backbone-kwargs")
    models = [
        ModelSpec(backbone=b.strip(), pretrained=args.pretrained, backbone_kwargs=backbone_kwargs, seed=args.seed)
        for b in args.backbones.split(",")
        if b.strip()
    ]
    models += [ModelSpec(checkpoint=c.strip()) for c in args.checkpoints.split(",") if c.strip()]
    if not methods or not models or not datasets:
        raise ValueError("give at least one method (--cam-methods), model (--backbones/--checkpoints) and --data")
    board = run_leaderboard(
        methods,
        models,
        datasets,
        args.out,
        image_size=args.image_size,
        resize=args.resize,
        batch_size=args.batch_size,
        cam_curve_interval=args.cam_curve_interval,
        limit=args.limit,
        num_classes=args.num_classes,
        overlay_images=args.overlay_images,
        normalization=args.normalization,
        percentile=args.percentile,
        device=resolve_device(args.device),
    )
    print(board.markdown_table())
    print(f"wrote {', '.join(str(p) for p in board.files)}")
    return 0
