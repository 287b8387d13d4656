"""``wsol metadata``: the reference layout's metadata of any supported dataset, without computing any map."""

from __future__ import annotations

import argparse
from pathlib import Path

from wsol.commands.arguments import parse_data_spec, parse_json_option


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "metadata",
        help="write the reference metadata (image_ids, class_labels, image_sizes, localization) of a dataset split",
        description=(
            "Write OUT/image_ids.txt, class_labels.txt, image_sizes.txt and localization.txt (boxes in original "
            "pixels) of one split as the reference benchmark lays them out, and OUT/class_names.txt (nothing is "
            "written outside OUT). Score "
            "maps made by any tool then go to 'wsol evaluate --metadata OUT --scoremaps DIR' (add --upsample for "
            "maps at feature resolution, e.g. 7x7 from pytorch-grad-cam or torch-cam)."
        ),
    )
    p.add_argument(
        "--data",
        required=True,
        help="dataset NAME[=PATH], or a Tiny ImageNet / reference-metadata folder (single-label data with boxes)",
    )
    p.add_argument("--split", default="val", help="split to describe (default: %(default)s)")
    p.add_argument("--data-options", default=None, help="JSON options of the reader, e.g. '{\"val_per_class\": 4}'")
    p.add_argument("--out", required=True, help="output folder (the split's metadata folder)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from wsol.atomic import write_text
    from wsol.data.wsoleval_metadata import MetadataRecord, write_metadata

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    spec = parse_data_spec(args.data, args.split, parse_json_option(args.data_options, "--data-options"))
    dataset = spec.open()
    if dataset.multilabel:
        raise ValueError(f"{spec.label}: the reference metadata holds one class per image; this data is multi-label")
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    records = []
    for index in tqdm(range(count), desc="metadata", disable=args.no_progress):
        sample = dataset.load(index)
        if len(sample.boxes) == 0:
            raise ValueError(f"{spec.label}: image {sample.image_id!r} has no box; the box metadata needs one")
        height, width = sample.image.shape[:2]
        records.append(MetadataRecord(sample.image_id, int(sample.labels[0]), (width, height), sample.boxes.tolist()))
    if not records:
        raise ValueError(f"{spec.label}: the {args.split} split has no images")
    folder = write_metadata(Path(args.out), records)
    write_text(folder / "class_names.txt", "".join(f"{name}\n" for name in dataset.class_names))
    print(f"wrote the metadata of {len(records)} images ({spec.label}, {args.split}) to {folder}")
    return 0
