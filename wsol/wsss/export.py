"""Pseudo-mask files: indexed PNGs with the VOC palette, and COCO-style JSON of RLE masks (pycocotools).

A label map holds 0 for background, ``c + 1`` for class ``c`` and 255 for ignore (the schema of
:mod:`wsol.data.schema`). The PNG stores those values as palette indices, so any segmentation trainer reads
them back unchanged (``np.array(Image.open(path))``) while viewers show the VOC colours.

In the JSON, category ``c + 1`` is class ``c``; each image has one annotation per class in its map (``iscrowd``
0, ``segmentation`` an RLE with string counts, ``area`` and ``bbox`` from pycocotools); background is every
pixel in no annotation except the ignore region, stored per image as ``images[i]["ignore_rle"]``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wsol.data.palette import voc_palette
from wsol.data.schema import IGNORE_INDEX
from wsol.wsss.store import atomic_write

__all__ = [
    "label_map_annotations",
    "load_label_png",
    "rle_decode",
    "rle_encode",
    "save_label_png",
    "voc_palette",
    "write_coco_json",
]


def save_label_png(path: str | Path, labels: np.ndarray) -> Path:
    """Write a ``(H, W)`` uint8 label map as an indexed PNG with the VOC palette, atomically.

    Raises:
        ValueError: if ``labels`` is not a 2-D array of integers in [0, 255].
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"a label map must be a (H, W) integer array, got {labels.shape} {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"label values must lie in [0, 255], got [{labels.min()}, {labels.max()}]")
    image = Image.fromarray(labels.astype(np.uint8))
    image.putpalette(voc_palette().ravel().tolist())  # turns the "L" image into a "P" one, indices unchanged
    return atomic_write(Path(path), lambda tmp: image.save(tmp, format="PNG"))


def load_label_png(path: str | Path) -> np.ndarray:
    """Read an indexed label PNG back as its ``(H, W)`` uint8 indices (not colours).

    Raises:
        ValueError: if the file is not a palette (or greyscale) PNG.
    """
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected an indexed (palette) PNG, got mode {image.mode}")
        return np.array(image, dtype=np.uint8)


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of a binary ``(H, W)`` mask, with ``counts`` as a JSON-ready string."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Binary ``(H, W)`` uint8 mask of a COCO RLE (string or bytes ``counts``)."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    coded = {"size": list(rle["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
    with warnings.catch_warnings():  # pycocotools' NumPy 2 "copy keyword" notice
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        return mask_utils.decode(coded)


def label_map_annotations(labels: np.ndarray, image_id: int, first_id: int = 1) -> list[dict[str, Any]]:
    """COCO annotations of a label map: one RLE per class value in ``1..254``, ids from ``first_id``."""
    from pycocotools import mask as mask_utils

    anns = []
    for value in np.unique(labels):
        if value == 0 or value == IGNORE_INDEX:
            continue
        rle = rle_encode(labels == value)
        coded = {"size": rle["size"], "counts": rle["counts"].encode()}
        anns.append(
            {
                "id": first_id + len(anns),
                "image_id": int(image_id),
                "category_id": int(value),
                "segmentation": rle,
                "area": float(mask_utils.area(coded)),
                "bbox": [float(v) for v in mask_utils.toBbox(coded)],
                "iscrowd": 0,
            }
        )
    return anns


def write_coco_json(
    path: str | Path,
    entries: Iterable[tuple[str, np.ndarray]],
    class_names: Sequence[str],
    info: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Write every label map as one COCO-style JSON (images, categories, RLE annotations), atomically.

    Args:
        path: the ``.json`` file.
        entries: ``(file_name, label_map)`` pairs; image ids are their 1-based positions.
        class_names: names of classes ``0..K-1`` (categories ``1..K``).
        info: extra fields for the JSON's ``info`` record (settings of the run).

    Returns:
        Counts of ``images`` and ``annotations`` written.
    """
    images, annotations = [], []
    for image_id, (file_name, labels) in enumerate(entries, start=1):
        record: dict[str, Any] = {
            "id": image_id,
            "file_name": file_name,
            "height": int(labels.shape[0]),
            "width": int(labels.shape[1]),
        }
        if (labels == IGNORE_INDEX).any():
            record["ignore_rle"] = rle_encode(labels == IGNORE_INDEX)
        images.append(record)
        annotations.extend(label_map_annotations(labels, image_id, first_id=len(annotations) + 1))
    data = {
        "info": {"description": "wsol pseudo-masks", **(info or {})},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": str(name), "supercategory": ""} for c, name in enumerate(class_names)],
    }
    atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(data)))
    return {"images": len(images), "annotations": len(annotations)}
