"""``wsol cams``: write protocol score maps of a CAM method, plus the metadata ``wsol evaluate`` reads."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from wsol.commands.arguments import (
    add_data_arguments,
    add_deprecated,
    add_device_argument,
    add_model_arguments,
    add_normalization_arguments,
    check_normalization_arguments,
    normalization_record,
    parse_data_spec,
    parse_json_option,
    resolve_device,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cams",
        help="write score maps of a CAM method in the reference layout, for 'wsol evaluate'",
        description=(
            "Run a post-hoc CAM method over a dataset under the reference protocol (images squashed to "
            "SIZE x SIZE, the GT class's map, float64 bicubic upsampling, per-image min-max or the "
            "--normalization chosen) and write "
            "OUT/scoremaps/<image_id>.npy, the metadata OUT/metadata/{image_ids,class_labels,image_sizes,"
            "localization}.txt, the model's top-1 classes OUT/predictions.txt, OUT/class_names.txt and "
            "OUT/cams.json. Score them with: wsol evaluate --metadata OUT/metadata --scoremaps "
            "OUT/scoremaps --predictions OUT/predictions.txt"
        ),
    )
    add_model_arguments(p)
    p.add_argument(
        "--cam-method",
        help="cam, gradcam, gradcampp, xgradcam, layercam, scorecam, eigencam, or native (a wsol method's own maps)",
    )
    add_deprecated(p, "--method", "cam_method", "use --cam-method", takes_value=True)
    p.add_argument("--target-layer", default=None, help="dotted layer name (default: the last feature map)")
    add_data_arguments(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--targets", choices=("gt", "top1"), default="gt", help="map of the GT class (protocol) or top-1")
    p.add_argument(
        "--dtype",
        choices=("float64", "float32", "float16"),
        default="float64",
        help="score-map dtype: float64 (the reference's, default), float32, or float16 (a quarter of the disk)",
    )
    add_normalization_arguments(p)
    add_device_argument(p)
    p.add_argument(
        "--gt",
        choices=("boxes", "masks"),
        default="boxes",
        help="what localization.txt holds: boxes (default) or mask PNGs written under OUT/metadata/masks (PxAP)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the outputs of an earlier run in OUT (refused otherwise)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from wsol.cams import create_cam, load_cam_model
    from wsol.cams.runner import dataset_class_map, protocol_loader, score_batches
    from wsol.data.wsoleval_metadata import MetadataRecord
    from wsol.evaluation.reference_output import ReferenceOutput

    start = time.perf_counter()
    check_normalization_arguments(args)
    spec = parse_data_spec(args.data, args.split, parse_json_option(args.data_options, "--data-options"))
    dataset = spec.open()
    model = load_cam_model(
        checkpoint=args.checkpoint,
        backbone=args.backbone,
        pretrained=args.pretrained,
        num_classes=args.num_classes or (None if args.pretrained else dataset.num_classes),
        backbone_kwargs=parse_json_option(args.backbone_kwargs, "--backbone-kwargs"),
        seed=args.seed,
    )
    model.module.to(resolve_device(args.device))
    class_map = dataset_class_map(dataset, model)
    loader = protocol_loader(dataset, model, args.image_size, args.resize, args.batch_size, args.limit)
    if not args.cam_method:
        raise ValueError("--cam-method is required (cam, gradcam, ..., see wsol cams --help)")
    method = create_cam(args.cam_method, model.module, target_layer=args.target_layer)
    out = Path(args.out)
    writer = ReferenceOutput(out, "wsol cams")
    # The manifest comes first and is completed last: an interrupted run is recognisable as such.
    writer.claim(args.overwrite, {"method": args.cam_method, "data": spec.label})
    # Top-1 classes in dataset indices; a model class outside the dataset (ImageNet) becomes "other" (K).
    to_dataset = {int(m): d for d, m in enumerate(class_map.tolist())}
    records, predictions, seconds, correct = [], [], 0.0, 0
    scored_batches = score_batches(
        method, loader, class_map, args.image_size, args.targets, args.normalization, args.percentile
    )
    for scored in tqdm(scored_batches, total=len(loader), desc=f"cams {args.cam_method}"):
        batch = scored.batch
        seconds += scored.seconds
        correct += int(scored.correct.sum())
        for i, image_id in enumerate(batch["image_id"]):
            writer.save_map(image_id, scored.scoremaps[i].astype(args.dtype))
            label = int(batch["label"][i])
            width, height = (int(v) for v in batch["orig_size"][i])
            record = MetadataRecord(image_id, label, (width, height), batch["orig_boxes"][i].tolist())
            if args.gt == "masks":
                record.masks, record.ignore = _write_masks(out / "metadata", image_id, batch["orig_mask"][i], label)
            records.append(record)
            predictions.append(to_dataset.get(int(scored.predicted[i]), len(class_map)))
    if not records:
        raise ValueError("the dataset yielded no images")
    info = {
        "method": args.cam_method,
        "model": model.label,
        "head": model.head,
        "data": spec.label,
        "split": args.split,
        "num_images": len(records),
        "targets": args.targets,
        "protocol": {
            "image_size": args.image_size,
            "resize": args.resize,
            "mean": model.mean,
            "std": model.std,
            "upsampling": f"bicubic float64, then per-image {args.normalization}",
            "normalization": normalization_record(args.normalization, args.percentile),
            "dtype": args.dtype,
        },
        "top1_acc": 100.0 * correct / len(records),
        "seconds_per_image": seconds / len(records),
        "total_seconds": time.perf_counter() - start,
        "torch_threads": torch.get_num_threads(),
    }
    writer.finish(records, predictions, list(dataset.class_names), info)
    print(
        f"wrote {len(records)} score maps to {writer.scoremaps} ({info['seconds_per_image'] * 1e3:.1f} ms/image), "
        f"metadata to {out / 'metadata'}\n"
        f"score them with: wsol evaluate --metadata {out / 'metadata'} --scoremaps {writer.scoremaps} "
        f"--predictions {out / 'predictions.txt'}"
    )
    return 0


def _relative_id(image_id: str) -> str:
    """The image id as a path inside OUT/scoremaps; an id that would climb out of it is refused."""
    from wsol.wsss.store import relative_id

    try:
        return str(relative_id(image_id))
    except ValueError:
        raise ValueError(f"image id {image_id!r} cannot name a file inside OUT/scoremaps") from None


def _write_masks(metadata: Path, image_id: str, mask, label: int) -> tuple[list[str], str]:
    """The GT class's mask (and the ignore region, if any) as 0/255 PNGs; paths relative to ``metadata``."""
    import cv2
    import numpy as np

    if mask is None:
        raise ValueError(f"--gt masks needs masks, but {image_id!r} has none")
    rel = Path("masks") / f"{_relative_id(image_id)}.png"
    (metadata / rel).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(metadata / rel), np.where(mask == label + 1, 255, 0).astype(np.uint8))
    ignore = ""
    if (mask == 255).any():
        ignore = str(Path("masks") / f"{image_id}.ignore.png")
        cv2.imwrite(str(metadata / ignore), np.where(mask == 255, 255, 0).astype(np.uint8))
    return [str(rel)], ignore
