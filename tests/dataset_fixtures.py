"""Writers of tiny datasets in each supported layout (generated per test, a few 32-48 px images each).

Every writer returns what it wrote (ids, labels, boxes, masks) so tests can compare the readers' output
with the ground truth value by value.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from wsol.data.wsoleval_metadata import MetadataRecord, write_metadata

CLASSES = ("cat", "dog", "bird")


def image_with_box(rng: np.random.Generator, size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """``(H, W, 3)`` uint8 noise with a bright rectangle over the inclusive ``box``."""
    width, height = size
    img = rng.integers(0, 120, (height, width, 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    img[y0 : y1 + 1, x0 : x1 + 1] = rng.integers(150, 255, 3, dtype=np.uint8)
    return img


def _box(rng: np.random.Generator, size: tuple[int, int]) -> tuple[int, int, int, int]:
    width, height = size
    x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
    return x0, y0, int(rng.integers(x0 + 2, width)), int(rng.integers(y0 + 2, height))


def write_wsoleval(
    root: Path, splits: tuple[str, ...] = ("train", "test"), per_class: int = 2, masks: bool = False, seed: int = 0
) -> dict[str, list[MetadataRecord]]:
    """Reference-style metadata + PNG images (boxes, or OpenImages-style instance/ignore masks)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[MetadataRecord]] = {}
    for split in splits:
        records = []
        for label, name in enumerate(CLASSES):
            for i in range(per_class):
                size = (int(rng.integers(36, 49)), int(rng.integers(32, 45)))
                image_id = f"{split}/{label:03d}.{name}/{name}_{i}.png"
                box = _box(rng, size)
                (root / image_id).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image_with_box(rng, size, box)).save(root / image_id)
                record = MetadataRecord(image_id, label, size, [box])
                if masks:
                    record.boxes = []
                    record.masks, record.ignore = _instance_masks(root, image_id, size, box, i)
                records.append(record)
        write_metadata(root / "metadata" / split, records, CLASSES)
        out[split] = records
    return out


def _instance_masks(
    root: Path, image_id: str, size: tuple[int, int], box: tuple[int, int, int, int], i: int
) -> tuple[list[str], str]:
    """Two instance PNGs (the box, a 3x3 corner square) and an ignore PNG (the top row band)."""
    width, height = size
    stem = Path(image_id).with_suffix("")
    first = np.zeros((height, width), np.uint8)
    x0, y0, x1, y1 = box
    first[y0 : y1 + 1, x0 : x1 + 1] = 255
    second = np.zeros((height, width), np.uint8)
    second[height - 3 :, width - 3 :] = 255
    ignore = np.zeros((height, width), np.uint8)
    ignore[:2] = 255
    paths = [f"masks/{stem}_a.png", f"masks/{stem}_b.png", f"masks/{stem}_ignore.png"]
    for rel, arr in zip(paths, (first, second, ignore), strict=True):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        # Half of the images store masks at twice the resolution, as some OpenImages masks do.
        img = Image.fromarray(arr)
        if i % 2:
            img = img.resize((2 * width, 2 * height), Image.NEAREST)
        img.save(root / rel)
    return paths[:2], paths[2]


def write_cub_official(root: Path, seed: int = 0) -> dict[str, tuple]:
    """A ``CUB_200_2011`` folder: images/, images.txt, image_class_labels.txt, train_test_split.txt, ..."""
    rng = np.random.default_rng(seed)
    lines = {"images": [], "labels": [], "split": [], "boxes": []}
    truth = {}
    key = 0
    for label, name in enumerate(CLASSES):
        folder = f"{label + 1:03d}.{name.title()}"
        for i in range(3):
            key += 1
            size = (int(rng.integers(36, 49)), int(rng.integers(32, 45)))
            x0, y0, x1, y1 = _box(rng, size)
            rel = f"{folder}/{name}_{i}.jpg"
            (root / "images" / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image_with_box(rng, size, (x0, y0, x1, y1))).save(root / "images" / rel, quality=95)
            is_train = int(i < 2)
            lines["images"].append(f"{key} {rel}")
            lines["labels"].append(f"{key} {label + 1}")
            lines["split"].append(f"{key} {is_train}")
            lines["boxes"].append(f"{key} {x0}.0 {y0}.0 {x1 - x0 + 1}.0 {y1 - y0 + 1}.0")
            truth[rel] = (label, "train" if is_train else "test", (x0, y0, x1, y1), size)
    files = {"images": "images.txt", "labels": "image_class_labels.txt", "split": "train_test_split.txt"}
    files["boxes"] = "bounding_boxes.txt"
    for k, name in files.items():
        (root / name).write_text("\n".join(lines[k]) + "\n")
    (root / "classes.txt").write_text("".join(f"{i + 1} {i + 1:03d}.{n.title()}\n" for i, n in enumerate(CLASSES)))
    return truth


VOC_XML = """<annotation>
  <folder>VOC2012</folder>
  <filename>{image_id}.jpg</filename>
  <size>
    <width>{width}</width>
    <height>{height}</height>
    <depth>3</depth>
  </size>
{objects}</annotation>
"""
VOC_OBJECT = """  <object>
    <name>{name}</name>
    <difficult>{difficult}</difficult>
    <bndbox>
      <xmin>{x0}</xmin>
      <ymin>{y0}</ymin>
      <xmax>{x1}</xmax>
      <ymax>{y1}</ymax>
    </bndbox>
    <part>
      <name>head</name>
      <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox>
    </part>
  </object>
"""
VOC_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable")


def write_voc(root: Path, seed: int = 0, n_train: int = 3, n_val: int = 2) -> dict[str, dict]:
    """A ``VOC2012`` folder with two objects per image (one difficult in the first image) and masks."""
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    truth: dict[str, dict] = {}
    splits = {"train": [], "val": []}
    for n in range(n_train + n_val):
        image_id = f"2008_{n:06d}"
        size = (int(rng.integers(40, 49)), int(rng.integers(32, 41)))
        width, height = size
        classes = [int(c) for c in rng.choice(len(VOC_NAMES), 2, replace=False)]
        boxes = [_box(rng, size) for _ in classes]
        mask = np.zeros((height, width), np.uint8)
        objects = ""
        for c, (x0, y0, x1, y1) in zip(classes, boxes, strict=True):
            mask[y0 : y1 + 1, x0 : x1 + 1] = c + 1
            objects += VOC_OBJECT.format(name=VOC_NAMES[c], difficult=int(n == 0 and c == classes[1]), x0=x0 + 1,
                                         y0=y0 + 1, x1=x1 + 1, y1=y1 + 1)  # fmt: skip
        mask[0, :] = 255  # a border of "void" pixels
        image = image_with_box(rng, size, boxes[0])
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        xml = VOC_XML.format(image_id=image_id, width=width, height=height, objects=objects)
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
        palette = Image.fromarray(mask, mode="P")
        palette.putpalette([v for i in range(256) for v in (i, (37 * i) % 256, (91 * i) % 256)])
        palette.save(root / "SegmentationClass" / f"{image_id}.png")
        split = "train" if n < n_train else "val"
        splits[split].append(image_id)
        truth[image_id] = {"classes": sorted(classes), "boxes": boxes, "mask": mask, "size": size, "split": split}
    for split, ids in splits.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return truth


def write_sbd(root: Path, voc_truth: dict[str, dict], seed: int = 1) -> dict[str, np.ndarray]:
    """SBD ``dataset`` folder: ``cls/<id>.mat`` (GTcls.Segmentation), train.txt, val.txt; new ids get images."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    (root / "cls").mkdir(parents=True, exist_ok=True)
    voc_root = root.parent / "VOC2012"
    new = {}
    for n in range(2):
        image_id = f"2009_{n:06d}"
        size = (40, 36)
        box = _box(rng, size)
        mask = np.zeros((size[1], size[0]), np.uint8)
        mask[box[1] : box[3] + 1, box[0] : box[2] + 1] = 3
        savemat(root / "cls" / f"{image_id}.mat", {"GTcls": {"Segmentation": mask}})
        Image.fromarray(image_with_box(rng, size, box)).save(voc_root / "JPEGImages" / f"{image_id}.jpg")
        xml = VOC_XML.format(image_id=image_id, width=size[0], height=size[1], objects=VOC_OBJECT.format(
            name="bird", difficult=0, x0=box[0] + 1, y0=box[1] + 1, x1=box[2] + 1, y1=box[3] + 1))  # fmt: skip
        (voc_root / "Annotations" / f"{image_id}.xml").write_text(xml)
        new[image_id] = mask
    val_id = next(i for i, t in voc_truth.items() if t["split"] == "val")
    (root / "train.txt").write_text("2009_000000\n")
    (root / "val.txt").write_text(f"2009_000001\n{val_id}\n")  # a VOC val image must not enter train_aug
    return new


def write_coco(root: Path, split: str = "val2017", seed: int = 0) -> dict:
    """COCO layout with polygon instances (overlapping, one crowd RLE) on three images plus an unlabeled one."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    categories = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]
    images, anns = [], []
    for n in range(4):
        width, height = 48, 40
        name = f"{n:012d}.jpg"
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(root / split / name)
        images.append({"id": 100 + n, "file_name": name, "width": width, "height": height})

    # image 100: a large person with a small dog on top; image 101: a car + a crowd of persons.
    def poly(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
        return [[x0, y0, x1, y0, x1, y1, x0, y1]]

    anns.append({"id": 1, "image_id": 100, "category_id": 1, "bbox": [4, 4, 30, 30], "area": 900.0,
                 "segmentation": poly(4, 4, 34, 34), "iscrowd": 0})  # fmt: skip
    anns.append({"id": 2, "image_id": 100, "category_id": 18, "bbox": [10, 10, 8, 8], "area": 64.0,
                 "segmentation": poly(10, 10, 18, 18), "iscrowd": 0})  # fmt: skip
    anns.append({"id": 3, "image_id": 101, "category_id": 3, "bbox": [20.5, 5.25, 27.5, 10.0], "area": 275.0,
                 "segmentation": poly(20.5, 5.25, 48, 15.25), "iscrowd": 0})  # fmt: skip
    crowd = np.zeros((40, 48), np.uint8, order="F")
    crowd[25:35, 0:20] = 1
    rle = mask_utils.encode(crowd)
    rle["counts"] = rle["counts"].decode()
    anns.append({"id": 4, "image_id": 101, "category_id": 1, "bbox": [0, 25, 20, 10], "area": 200.0,
                 "segmentation": rle, "iscrowd": 1})  # fmt: skip
    anns.append({"id": 5, "image_id": 102, "category_id": 18, "bbox": [0, 0, 48, 40], "area": 1920.0,
                 "segmentation": poly(0, 0, 48, 40), "iscrowd": 0})  # fmt: skip
    data = {"images": images, "annotations": anns, "categories": categories}
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return data


def write_folder(root: Path, splits: tuple[str, ...] = ("train", "val"), seed: int = 0) -> dict[str, dict]:
    """``<split>/<class>/<image>.png`` with a ``boxes.csv`` (header + one or two boxes per image)."""
    rng = np.random.default_rng(seed)
    truth: dict[str, dict] = {}
    for split in splits:
        rows = ["image,x0,y0,x1,y1"]
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(2):
                size = (40, 32)
                box = _box(rng, size)
                rel = f"{name}/{i}.png"
                Image.fromarray(image_with_box(rng, size, box)).save(root / split / rel)
                rows.append(f"{rel},{box[0]},{box[1]},{box[2]},{box[3]}")
                boxes = [box]
                if i == 1:
                    rows.append(f"{rel},0,0,3,3")
                    boxes.append((0, 0, 3, 3))
                truth[f"{split}/{rel}"] = {"label": label, "boxes": boxes}
        (root / split / "boxes.csv").write_text("\n".join(rows) + "\n")
    return truth


def write_tiny_imagenet(root: Path, seed: int = 0, per_class: int = 4, classes: int = 3) -> None:
    """Tiny ImageNet layout (wnids.txt, train/<wnid>/images + boxes, val/images + val_annotations.txt), 32 px;
    ``classes`` wnids n00000001, n00000002, ..."""
    rng = np.random.default_rng(seed)
    wnids = [f"n{i:08d}" for i in range(1, classes + 1)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "val" / "images").mkdir(parents=True, exist_ok=True)
    val_rows = []
    for w in wnids:
        (root / "train" / w / "images").mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(per_class):
            box = _box(rng, (32, 32))
            Image.fromarray(image_with_box(rng, (32, 32), box)).save(root / "train" / w / "images" / f"{w}_{i}.JPEG")
            rows.append(f"{w}_{i}.JPEG\t" + "\t".join(map(str, box)))
            name = f"val_{w}_{i}.JPEG"
            Image.fromarray(image_with_box(rng, (32, 32), box)).save(root / "val" / "images" / name)
            val_rows.append(f"{name}\t{w}\t" + "\t".join(map(str, box)))
        (root / "train" / w / f"{w}_boxes.txt").write_text("\n".join(rows) + "\n")
    (root / "val" / "val_annotations.txt").write_text("\n".join(val_rows) + "\n")
