"""``wsol export``: one ONNX graph with logits and normalised CAMs, checked against PyTorch."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wsol.commands.arguments import (
    add_deprecated,
    add_device_argument,
    add_normalization_arguments,
    check_normalization_arguments,
    resolve_device,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX with outputs 'logits' and 'cams'",
        description=(
            "Export a trained checkpoint or a backbone (pretrained ImageNet head, or a random head) to one "
            "ONNX graph: input 'images' (normalised float32 NCHW, dynamic batch), outputs 'logits' and "
            "'cams' (upsampled to the input size, min-max normalised or as --normalization says). Writes "
            "OUT/model.onnx and OUT/model.json (preprocessing, class names, opset, parity), runs onnx.checker and, "
            "unless --no-parity, compares onnxruntime with PyTorch (|delta| <= 1e-4, same top-1). The graph is "
            "traced on --device."
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a Lightning checkpoint of a wsol.methods class")
    src.add_argument("--backbone", help="a registered backbone name (see 'wsol backbones') or timm:<model>")
    p.add_argument(
        "--out",
        required=True,
        help="output folder: OUT/model.onnx and its sidecar OUT/model.json (a path ending in .onnx is deprecated)",
    )
    add_deprecated(p, "--method", None, "the class recorded in the checkpoint is always used", takes_value=True)
    p.add_argument("--pretrained", action="store_true", help="load the backbone's pretrained weights and head")
    p.add_argument("--num-classes", type=int, default=None, help="classes of a random head (default: 1000)")
    p.add_argument("--backbone-kwargs", default=None, help="JSON options of the backbone, e.g. '{\"last_stride\": 1}'")
    p.add_argument("--image-size", default="224", help="input size, 'S' or 'H,W' (default: %(default)s)")
    p.add_argument(
        "--dynamic-size",
        action="store_true",
        help="dynamic height and width too (minmax or max normalisation; parity checked at two sizes)",
    )
    p.add_argument("--cam-classes", default="top1", help="top1, topk:K or all (default: %(default)s)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset; 17 suits TensorRT 8.5/JetPack 5 (default)")
    p.add_argument(
        "--exporter",
        choices=("auto", "torchscript", "dynamo"),
        default="auto",
        help="auto: TorchScript for opset <= 17, dynamo above (default)",
    )
    add_normalization_arguments(p, what="in-graph per-map normalisation of 'cams'")
    p.add_argument("--class-names", default=None, help="text file with one class name per line")
    p.add_argument("--no-parity", action="store_true", help="skip the onnxruntime-vs-PyTorch parity check")
    add_deprecated(p, "--skip-parity", "no_parity", "use --no-parity")
    add_device_argument(p)
    p.add_argument("--seed", type=int, default=0, help="seed of a random head (default: %(default)s)")
    p.set_defaults(func=run)


def parse_image_size(text: str) -> tuple[int, int]:
    """``"224"`` -> (224, 224); ``"192,256"`` or ``"192x256"`` -> (192, 256)."""
    parts = text.lower().replace("x", ",").split(",")
    try:
        size = tuple(int(v) for v in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"--image-size must be 'S' or 'H,W' with positive integers, got {text!r}")
    return size  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    from wsol.onnx import build_backbone_model, export_onnx, imagenet_class_names, load_checkpoint_model

    check_normalization_arguments(args)
    image_size = parse_image_size(args.image_size)
    class_names = None
    if args.class_names:
        path = Path(args.class_names)
        if not path.is_file():
            raise FileNotFoundError(f"class-names file not found: {path}")
        class_names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if args.checkpoint:
        loaded = load_checkpoint_model(args.checkpoint)
        model = loaded.model
        source = {"checkpoint": Path(args.checkpoint).name, "method": loaded.method, "backbone": loaded.backbone}
        class_names = class_names or loaded.class_names
    else:
        kwargs = json.loads(args.backbone_kwargs) if args.backbone_kwargs else None
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ValueError("--backbone-kwargs must be a JSON object")
        model, head = build_backbone_model(args.backbone, args.pretrained, args.num_classes, kwargs, args.seed)
        source = {"backbone": args.backbone, "pretrained": args.pretrained, "head": head}
        if head == "random":
            source["seed"] = args.seed
            if args.pretrained:
                print(f"wsol export: note: {args.backbone} has no pretrained classifier; the head is random")
        elif class_names is None and model.num_classes == 1000:
            class_names = imagenet_class_names()
    out = Path(args.out)
    if out.suffix == ".onnx":
        print(f"wsol export: note: --out {out} (a file) is deprecated; give a folder (OUT/model.onnx)", file=sys.stderr)
    else:
        out = out / "model.onnx"
    model.to(resolve_device(args.device))
    result = export_onnx(
        model,
        out,
        image_size=image_size,
        cam_classes=args.cam_classes,
        opset=args.opset,
        exporter=args.exporter,
        class_names=class_names,
        parity=not args.no_parity,
        extra_metadata={"source": source},
        normalization=args.normalization,
        percentile=args.percentile,
        dynamic_size=args.dynamic_size,
    )
    meta = result.metadata
    print(
        f"wrote {result.path} ({meta['file_bytes'] / 2**20:.1f} MiB, opset {meta['opset']}, {meta['exporter']}, "
        f"cams {meta['outputs']['cams']['shape']}) and {result.sidecar_path}"
    )
    parity = result.parity
    if parity is None:
        print("parity check skipped")
        return 0
    line = (
        f"parity vs PyTorch (batches {parity['batches']}): max |d logits| {parity['logits_max_abs']:.2e}, "
        f"max |d cams| {parity['cams_max_abs']:.2e}, top-1 agreement {parity['top1_agree']:.0%}"
    )
    if not parity["pass"]:
        print(f"wsol export: error: parity check failed: {line} (tolerance {parity['atol']:g})", file=sys.stderr)
        return 1
    print(line + " - pass")
    return 0
