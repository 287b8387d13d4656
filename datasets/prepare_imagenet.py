"""Write the metadata ``wsol`` reads for ImageNet (ILSVRC 2012) from the official folders and box XMLs.

Usage::

    python datasets/prepare_imagenet.py /data/ILSVRC --val-boxes /data/ILSVRC2012_bbox_val_v3/val \
        [--train-boxes /data/ILSVRC2012_bbox_train_v2] [--synsets LOC_synset_mapping.txt]

Expects ``train/<wnid>/*.JPEG`` and a flat ``val/*.JPEG`` under the ILSVRC folder. Writes ``train`` (every
training image, with boxes where a training XML exists) and ``test`` (the 50,000 validation images, labels
and boxes from their XMLs) into ``<ILSVRC>/metadata``. The reference's ``val`` split (ImageNetV2 images
with its own boxes) is not part of the official archive; use the reference repository's metadata for it.
"""

from __future__ import annotations

import argparse

from wsol.data.prepare import prepare_imagenet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ilsvrc_dir", help="folder with train/<wnid>/*.JPEG and val/*.JPEG")
    parser.add_argument("--val-boxes", required=True, help="folder of the validation box XMLs")
    parser.add_argument("--train-boxes", default=None, help="folder of the training box XMLs (<wnid>/<id>.xml)")
    parser.add_argument("--synsets", default=None, help="'wnid name, ...' lines for class names")
    parser.add_argument("--out", default=None, help="metadata folder (default: ILSVRC_DIR/metadata)")
    parser.add_argument("--workers", type=int, default=8, help="threads reading image sizes")
    args = parser.parse_args(argv)
    counts = prepare_imagenet(args.ilsvrc_dir, args.val_boxes, args.train_boxes, args.synsets, args.out, args.workers)
    print(", ".join(f"{split}: {n} images" for split, n in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
