"""Pseudo-mask files: palette PNGs with ignore, COCO RLE through pycocotools, output names."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from wsol.wsss import image_stem, load_label_png, rle_decode, rle_encode, save_label_png, voc_palette, write_coco_json

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def _labels() -> np.ndarray:
    labels = np.zeros((7, 9), np.uint8)
    labels[1:4, 2:6] = 1
    labels[4:7, 0:3] = 3
    labels[5, 7:9] = 255
    labels[0, 8] = 80  # a COCO-sized class index
    return labels


def test_voc_palette_matches_the_devkit():
    pal = voc_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [128, 0, 0]
    assert pal[2].tolist() == [0, 128, 0]
    assert pal[15].tolist() == [192, 128, 128]  # VOC "person"
    assert pal[255].tolist() == [224, 224, 192]  # the ignore colour of VOC's PNGs
    assert len({tuple(c) for c in pal}) == 256


def test_png_keeps_indices_palette_and_ignore(tmp_path):
    labels = _labels()
    path = save_label_png(tmp_path / "a" / "m.png", labels)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "P"
        palette = np.asarray(im.getpalette()[: 256 * 3], np.uint8).reshape(256, 3)
        raw = np.array(im)
        rgb = np.asarray(im.convert("RGB"))
    assert np.array_equal(raw, labels)  # what a segmentation trainer reads: the indices, 255 included
    assert np.array_equal(palette, voc_palette())
    assert rgb[5, 8].tolist() == [224, 224, 192] and rgb[2, 3].tolist() == [128, 0, 0]
    assert np.array_equal(load_label_png(path), labels)
    assert list((tmp_path / "a").iterdir()) == [path]  # no temporary file left behind
    with pytest.raises(ValueError, match="integer"):
        save_label_png(tmp_path / "bad.png", labels.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        save_label_png(tmp_path / "bad.png", labels.astype(np.int32) + 1)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="palette"):
        load_label_png(tmp_path / "rgb.png")


def test_rle_round_trip_through_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    mask = (rng.random((13, 17)) > 0.6).astype(np.uint8)
    rle = rle_encode(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [13, 17]
    json.dumps(rle)  # JSON-ready
    assert np.array_equal(rle_decode(json.loads(json.dumps(rle))), mask)
    coded = {"size": rle["size"], "counts": rle["counts"].encode()}
    assert np.array_equal(mask_utils.decode(coded), mask)
    assert int(mask_utils.area(coded)) == int(mask.sum())


def test_coco_json_loads_in_pycocotools_and_rebuilds_the_label_maps(tmp_path):
    from pycocotools.coco import COCO

    a, b = _labels(), np.zeros((5, 4), np.uint8)
    b[1:3, 1:3] = 2
    counts = write_coco_json(tmp_path / "pm.json", [("a.png", a), ("b.png", b)], [f"c{i}" for i in range(80)])
    assert counts == {"images": 2, "annotations": 4}  # a: classes 1, 3, 80; b: class 2
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "pm.json"))
    assert [c["id"] for c in coco.loadCats(coco.getCatIds())][:3] == [1, 2, 3] and len(coco.getCatIds()) == 80
    for image_id, labels in ((1, a), (2, b)):
        info = coco.imgs[image_id]
        assert (info["height"], info["width"]) == labels.shape
        rebuilt = np.zeros_like(labels)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
            m = coco.annToMask(ann)
            assert ann["area"] == m.sum() and ann["iscrowd"] == 0
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(m)
            assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            rebuilt[m > 0] = ann["category_id"]
        if "ignore_rle" in info:
            rebuilt[rle_decode(info["ignore_rle"]) > 0] = 255
        assert np.array_equal(rebuilt, labels)
    assert "ignore_rle" in coco.imgs[1] and "ignore_rle" not in coco.imgs[2]


@pytest.mark.parametrize(
    ("image_id", "stem"),
    [("train/00012.png", "train/00012"), ("000000139.jpg", "000000139"), ("a\\b.JPEG", "a/b"), ("x", "x")],
)
def test_image_stem(image_id, stem):
    assert image_stem(image_id) == stem


@pytest.mark.parametrize("image_id", ["/etc/passwd", "../up.png", "a/../../b.png"])
def test_image_stem_rejects_escaping_ids(image_id):
    with pytest.raises(ValueError, match="cannot name"):
        image_stem(image_id)
