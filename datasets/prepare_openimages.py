"""Write the mask metadata ``wsol`` reads for one Open Images split from the official segmentation CSV.

Usage::

    python datasets/prepare_openimages.py /data/OpenImages test \
        --segmentation test-annotations-object-segmentation.csv --classes classes.txt \
        --masks /data/OpenImages/masks/test

Images are ``<root>/<split>/<ImageID>.jpg``; the extracted mask PNGs must lie under the root (their paths
are written relative to it). Keeps the images whose instance masks all belong to one listed class, and
writes an empty ignore PNG per image. For OpenImages30k exactly as benchmarked, prefer the reference
repository's own images, masks and metadata (its ignore masks come from the group-of boxes).
"""

from __future__ import annotations

import argparse

from wsol.data.prepare import prepare_openimages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="image root holding <split>/<ImageID>.jpg")
    parser.add_argument("split", help="train, val or test")
    parser.add_argument("--segmentation", required=True, help="the official *-annotations-object-segmentation.csv")
    parser.add_argument("--classes", required=True, help="one LabelName (MID) per line, optionally 'MID,name'")
    parser.add_argument("--masks", required=True, help="folder of the extracted mask PNGs (inside root)")
    parser.add_argument("--out", default=None, help="metadata folder (default: ROOT/metadata)")
    parser.add_argument("--workers", type=int, default=8, help="threads reading image sizes")
    args = parser.parse_args(argv)
    n = prepare_openimages(args.root, args.split, args.segmentation, args.classes, args.masks, args.out, args.workers)
    print(f"{args.split}: {n} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
