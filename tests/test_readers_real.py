"""The real subsets beside the repository load with in-bounds boxes and image-sized masks (skipped if absent)."""

import json

import numpy as np
import pytest

from wsol.data import read_dataset

pytestmark = pytest.mark.data


def test_tiny_imagenet_10_loads_with_in_bounds_boxes(tiny_imagenet_root):
    val = read_dataset("tiny_imagenet", tiny_imagenet_root, "val")
    train = read_dataset("tiny_imagenet", tiny_imagenet_root, "train")
    assert (len(train), len(val), val.num_classes) == (5000, 500, 10)
    for ds, step in ((val, 1), (train, 50)):
        for i in range(0, len(ds), step):
            sample = ds.load(i)  # Sample validates 0 <= x0 <= x1 <= W - 1 (and y) on construction
            assert sample.image.shape == (64, 64, 3) and sample.boxes.shape == (1, 4)


@pytest.mark.parametrize("split", ["val", "train"])
def test_coco_mini_loads_with_in_bounds_boxes_and_image_sized_masks(coco_mini_root, split):
    ds = read_dataset("coco", coco_mini_root, split)
    data = json.loads((coco_mini_root / "annotations" / f"instances_{split}2017.json").read_text())
    labelled = {a["image_id"] for a in data["annotations"]}
    assert len(ds) == len(labelled) and ds.num_classes == 80
    for i in range(0, len(ds), 1 if split == "val" else 8):
        sample = ds.load(i)
        height, width = sample.image.shape[:2]
        assert sample.mask.shape == (height, width)
        assert len(sample.boxes) >= 1
        assert (sample.boxes[:, 2] <= width - 1).all() and (sample.boxes[:, 3] <= height - 1).all()
        painted = {int(v) - 1 for v in np.unique(sample.mask) if 0 < v < 255}
        assert painted <= set(sample.labels) and painted  # every painted class is an image label
