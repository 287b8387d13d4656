"""Reader of COCO (instances annotations) through pycocotools: multi-labels, boxes and semantic masks.

Layout::

    <root>/annotations/instances_<split><year>.json
    <root>/<split><year>/<file_name>

Classes are the JSON's categories in id order (80 for COCO 2017), so class ``c`` is the ``c``-th category
and mask value ``c + 1``. Image labels are the categories of all its annotations; images without any
annotation are skipped (a WSOL sample needs a label). Boxes ``[x, y, w, h]`` (continuous) become the
inclusive pixel boxes they touch, ``[floor(x), floor(y), ceil(x + w) - 1, ceil(y + h) - 1]``; crowd
annotations give labels but no box. The semantic mask paints instances largest first, so small objects
stay visible where instances overlap; crowd regions are 255 (ignore) unless covered by an instance.

JSON has no useful line numbers (COCO files are one line), so errors name the file and the annotation or
image id.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from wsol.data._io import load_rgb
from wsol.data.datasets import SampleDataset, register_reader, resolve_root
from wsol.data.schema import IGNORE_INDEX, Sample

# Boxes may overshoot the border by float round-off (x + w = 640.0001); more than this is an error.
_BORDER_TOLERANCE = 1.0


def coco_box_to_inclusive(bbox: list[float], width: int, height: int) -> tuple[float, float, float, float] | None:
    """``[x, y, w, h]`` to the inclusive pixel box it covers, clipped by at most a pixel of round-off.

    Returns:
        ``(x0, y0, x1, y1)``, or None when the box lies outside the image or is negative.
    """
    x, y, w, h = (float(v) for v in bbox)
    if x < 0 or y < 0 or w < 0 or h < 0:
        return None
    if x + w > width + _BORDER_TOLERANCE or y + h > height + _BORDER_TOLERANCE:
        return None
    x0, y0 = math.floor(x), math.floor(y)
    x1, y1 = max(x0, math.ceil(x + w) - 1), max(y0, math.ceil(y + h) - 1)
    if x0 > width - 1 or y0 > height - 1:
        return None
    return float(x0), float(y0), float(min(x1, width - 1)), float(min(y1, height - 1))


class COCODataset(SampleDataset):
    """A COCO split with multi-labels, boxes and merged semantic masks.

    Args:
        root: folder holding ``annotations/`` and the image folders.
        split: ``train`` or ``val`` (with ``year``), or a full folder name such as ``val2014``.
        year: appended to ``split`` unless the split already ends in digits.
        masks: build semantic masks from the instance segmentations.
        check_images: verify at construction that every image file exists.

    Raises:
        ValueError: naming the JSON file and annotation/image id for an unknown category, a box outside its
            image or a malformed record.
        FileNotFoundError: naming the JSON file and image id of a missing image.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        year: str | int = 2017,
        masks: bool = True,
        check_images: bool = True,
    ) -> None:
        from pycocotools.coco import COCO

        self.root = Path(root)
        name = split if split[-1:].isdigit() else f"{split}{year}"
        self.ann_file = self.root / "annotations" / f"instances_{name}.json"
        self.image_dir = self.root / name
        if not self.ann_file.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {self.ann_file}")
        try:
            data = json.loads(self.ann_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.ann_file}:{err.lineno}: malformed JSON: {err.msg}") from None
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise ValueError(f"{self.ann_file}: missing list {key!r}")
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco.createIndex()
        self.category_ids = sorted(c["id"] for c in data["categories"])
        names = {c["id"]: c["name"] for c in data["categories"]}
        self.class_names = tuple(names[i] for i in self.category_ids)
        self.multilabel = True
        self.masks = masks
        index = {cid: i for i, cid in enumerate(self.category_ids)}
        self.items: list[tuple[int, tuple[int, ...], np.ndarray]] = []
        for image_id in sorted(self.coco.imgs):
            info = self.coco.imgs[image_id]
            self._check_image(info, check_images)
            labels, boxes = set(), []
            for ann in self.coco.imgToAnns.get(image_id, []):
                where = f"{self.ann_file}: annotation id {ann.get('id')} (image {info['file_name']})"
                if ann.get("category_id") not in index:
                    raise ValueError(f"{where}: unknown category_id {ann.get('category_id')!r}")
                labels.add(index[ann["category_id"]])
                if not isinstance(ann.get("bbox"), list) or len(ann["bbox"]) != 4:
                    raise ValueError(f"{where}: 'bbox' must be [x, y, w, h], got {ann.get('bbox')!r}")
                box = coco_box_to_inclusive(ann["bbox"], info["width"], info["height"])
                if box is None:
                    raise ValueError(
                        f"{where}: bbox {ann['bbox']} lies outside the {info['width']}x{info['height']} image"
                    )
                if not ann.get("iscrowd", 0):
                    boxes.append(box)
            if labels:
                self.items.append((image_id, tuple(sorted(labels)), np.asarray(boxes, np.float32).reshape(-1, 4)))

    def _check_image(self, info: dict[str, Any], check_file: bool) -> None:
        where = f"{self.ann_file}: image id {info.get('id')}"
        for key in ("file_name", "width", "height"):
            if key not in info:
                raise ValueError(f"{where}: missing {key!r}")
        if check_file and not (self.image_dir / info["file_name"]).is_file():
            raise FileNotFoundError(f"{where}: image not found: {self.image_dir / info['file_name']}")

    def __len__(self) -> int:
        return len(self.items)

    def semantic_mask(self, image_id: int) -> np.ndarray:
        """``(H, W)`` uint8 label map of an image: instances largest first, crowd regions 255 underneath."""
        info = self.coco.imgs[image_id]
        mask = np.zeros((info["height"], info["width"]), np.uint8)
        anns = self.coco.imgToAnns.get(image_id, [])
        crowd = [a for a in anns if a.get("iscrowd", 0)]
        solo = sorted((a for a in anns if not a.get("iscrowd", 0)), key=lambda a: -float(a.get("area", 0.0)))
        index = {cid: i for i, cid in enumerate(self.category_ids)}
        for ann in crowd + solo:
            if "segmentation" not in ann or not ann["segmentation"]:
                continue
            value = IGNORE_INDEX if ann.get("iscrowd", 0) else index[ann["category_id"]] + 1
            with warnings.catch_warnings():  # pycocotools' NumPy 2 "copy keyword" notice, once per mask
                warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
                instance = self.coco.annToMask(ann)
            mask[instance > 0] = value
        return mask

    def load(self, index: int) -> Sample:
        image_id, labels, boxes = self.items[index]
        info = self.coco.imgs[image_id]
        path = self.image_dir / info["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"{self.ann_file}: image id {image_id}: image not found: {path}")
        image = load_rgb(path)
        if image.shape[:2] != (info["height"], info["width"]):
            raise ValueError(
                f"{self.ann_file}: image id {image_id} is listed as {info['width']}x{info['height']} "
                f"but {path} is {image.shape[1]}x{image.shape[0]}"
            )
        mask = self.semantic_mask(image_id) if self.masks else None
        return Sample(image=image, labels=labels, boxes=boxes, image_id=info["file_name"], mask=mask)


@register_reader("coco")
def read_coco(
    root: str | Path | None,
    split: str,
    year: str | int = 2017,
    masks: bool = True,
    check_images: bool = True,
) -> COCODataset:
    """COCO from ``root`` or ``$WSOL_DATA/coco``."""
    return COCODataset(resolve_root(root, "coco"), split, year, masks, check_images)
