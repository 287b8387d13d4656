"""Copy a reproducible class subset of Tiny ImageNet, e.g. a held-out set of classes for the small-data study.

Usage::

    python datasets/subset_tiny_imagenet.py /data/tiny-imagenet-200 /data/tiny_imagenet_heldout \\
        --classes 10 --seed 1 --exclude-from /data/tiny_imagenet_10/wnids.txt

The classes are drawn with ``--seed`` from the source's ``wnids.txt`` minus those listed in
``--exclude-from`` (so a study tuned on one subset is checked on classes it has never seen), or given
with ``--wnids``. Train images and boxes, val images and their annotations, and ``words.txt`` are copied.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wsol.data.prepare import subset_tiny_imagenet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a full Tiny ImageNet folder (wnids.txt, train/, val/)")
    parser.add_argument("out", help="a new folder for the subset")
    parser.add_argument("--classes", type=int, default=10, help="number of classes to draw (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw (default: 0)")
    parser.add_argument("--exclude-from", help="a wnids.txt whose classes are never drawn")
    parser.add_argument("--wnids", help="comma-separated wnids to copy instead of drawing")
    args = parser.parse_args(argv)
    exclude = Path(args.exclude_from).read_text(encoding="utf-8").split() if args.exclude_from else ()
    wnids = args.wnids.split(",") if args.wnids else None
    chosen = subset_tiny_imagenet(args.source, args.out, args.classes, args.seed, exclude, wnids)
    print(f"{args.out}: {len(chosen)} classes ({', '.join(chosen)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
