"""Add SBD to PASCAL VOC 2012: ``SegmentationClassAug`` PNGs and the 10,582-image ``train_aug`` list.

Usage::

    python datasets/prepare_voc.py /data/VOCdevkit/VOC2012 /data/benchmark_RELEASE/dataset

The VOC reader reads the official layout directly (``train``/``val`` need no preparation); this script is
only for ``train_aug``, the training set of SEAM and Mixup-CAM. Needs scipy to read SBD's ``.mat`` files.
"""

from __future__ import annotations

import argparse

from wsol.data.prepare import prepare_voc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("voc_dir", help="the VOC2012 folder")
    parser.add_argument("sbd_dir", help="SBD's dataset folder (cls/, train.txt, val.txt)")
    args = parser.parse_args(argv)
    print(f"train_aug: {prepare_voc(args.voc_dir, args.sbd_dir)} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
