"""Write the metadata ``wsol`` reads for CUB-200-2011 from the official archive.

Usage::

    python datasets/prepare_cub.py /data/CUB_200_2011          # -> /data/CUB_200_2011/images/metadata/
    export WSOL_DATA=/data && ln -s /data/CUB_200_2011/images /data/CUB
    wsol train --config experiments/cam_vgg16_cub.yaml

Reads ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``, ``bounding_boxes.txt`` and
``classes.txt``; writes ``train`` (5,994 images) and ``test`` (5,794) in the reference's metadata format.
"""

from __future__ import annotations

import argparse

from wsol.data.prepare import prepare_cub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cub_dir", help="the extracted CUB_200_2011 folder")
    parser.add_argument("--out", default=None, help="metadata folder (default: CUB_DIR/images/metadata)")
    parser.add_argument("--workers", type=int, default=8, help="threads reading image sizes")
    args = parser.parse_args(argv)
    counts = prepare_cub(args.cub_dir, args.out, args.workers)
    print(", ".join(f"{split}: {n} images" for split, n in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
