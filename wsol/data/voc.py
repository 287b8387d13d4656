"""Reader of PASCAL VOC 2012 in its official layout (plus the SBD ``train_aug`` split when present).

Layout (``root`` is ``VOC2012`` or the ``VOCdevkit`` folder holding it)::

    JPEGImages/<id>.jpg
    Annotations/<id>.xml                   objects: name, difficult, bndbox (1-based inclusive pixels)
    SegmentationClass/<id>.png             palette indices: 0 background, 1..20 classes, 255 ignore (border)
    SegmentationClassAug/<id>.png          optional: SBD masks as label PNGs (datasets/prepare_voc.py)
    ImageSets/Segmentation/<split>.txt     train (1,464), val (1,449), trainval; train_aug (10,582, optional)

Image-level labels are the classes of the XML objects (difficult ones included, as psa/SEAM's
``cls_labels.npy``); boxes are the XML boxes moved to 0-based pixels; the mask is ``SegmentationClass``, else
``SegmentationClassAug``, else absent (``train_aug`` images outside the VOC segmentation set without SBD).
VOC's label values already follow the sample schema (class ``c`` is ``c + 1``, 255 = ignore).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

import numpy as np

from wsol.data._io import image_size, load_label_png, load_rgb, read_text
from wsol.data.datasets import SampleDataset, register_reader, resolve_root
from wsol.data.schema import IGNORE_INDEX, Sample

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


@dataclass
class VOCObject:
    """One ``<object>`` of an annotation file, with the line numbers of its name and box."""

    name: str
    name_line: int
    box: tuple[float, float, float, float] | None = None
    box_line: int = 0
    difficult: bool = False


@dataclass
class VOCAnnotation:
    """The parts of a VOC XML file the reader uses."""

    width: int = 0
    height: int = 0
    objects: list[VOCObject] = field(default_factory=list)


def parse_voc_xml(path: str | Path) -> VOCAnnotation:
    """Parse a VOC annotation file, keeping line numbers for error messages.

    Only direct ``<object>`` children of ``<annotation>`` count (``<part>`` names such as "head" are not
    objects). Coordinates stay 1-based as in the file.

    Raises:
        ValueError: ``file:line`` for malformed XML, a missing name or box, or a non-numeric value.
    """
    path = Path(path)
    ann = VOCAnnotation()
    stack: list[str] = []
    text: list[str] = []
    box: dict[str, float] = {}
    parser = expat.ParserCreate()

    def start(tag: str, _attrs: dict[str, str]) -> None:
        stack.append(tag)
        text.clear()
        if stack == ["annotation", "object"]:
            ann.objects.append(VOCObject("", parser.CurrentLineNumber))
        elif stack == ["annotation", "object", "bndbox"]:
            box.clear()
            ann.objects[-1].box_line = parser.CurrentLineNumber

    def end(tag: str) -> None:
        value, where = "".join(text).strip(), f"{path}:{parser.CurrentLineNumber}"
        if stack[:2] == ["annotation", "size"] and tag in ("width", "height"):
            setattr(ann, tag, int(_num(value, where)))
        elif stack == ["annotation", "object", "name"]:
            ann.objects[-1].name, ann.objects[-1].name_line = value, parser.CurrentLineNumber
        elif stack == ["annotation", "object", "difficult"]:
            ann.objects[-1].difficult = value == "1"
        elif stack[:3] == ["annotation", "object", "bndbox"] and len(stack) == 4:
            box[tag] = _num(value, where)
        elif stack == ["annotation", "object", "bndbox"]:
            try:
                ann.objects[-1].box = (box["xmin"], box["ymin"], box["xmax"], box["ymax"])
            except KeyError as err:
                raise ValueError(f"{where}: <bndbox> lacks <{err.args[0]}>") from None
        stack.pop()
        text.clear()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text.append
    try:
        parser.Parse(path.read_bytes(), True)
    except expat.ExpatError as err:
        raise ValueError(f"{path}:{err.lineno}: malformed XML: {expat.errors.messages[err.code]}") from None
    for obj in ann.objects:
        if not obj.name:
            raise ValueError(f"{path}:{obj.name_line}: <object> without a <name>")
    return ann


def _num(value: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{where}: expected a number, got {value!r}") from None


def read_split_ids(path: Path) -> list[tuple[int, str]]:
    """Image ids of a split list with their line numbers.

    Accepts plain ids (``2007_000032``) and psa/SEAM-style lines
    (``/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png``).
    """
    if not path.is_file():
        raise FileNotFoundError(f"split list not found: {path}")
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if line.strip():
            rows.append((number, Path(line.split()[0]).stem))
    return rows


class VOCDataset(SampleDataset):
    """A PASCAL VOC 2012 split with image-level multi-labels, boxes and (where available) masks.

    Args:
        root: ``VOC2012`` folder (or ``VOCdevkit``).
        split: name of a list in ``ImageSets/Segmentation`` (``train``, ``val``, ``trainval``, ``train_aug``).
        image_set: list name to read instead of ``split`` (the datamodule always asks for ``train``, so
            ``train_options: {image_set: train_aug}`` trains on SBD-augmented data).
        split_file: explicit split list, overriding ``split`` and ``image_set``.
        masks: load segmentation masks when a mask file exists.
        difficult: keep objects marked difficult (labels and boxes); with False, images whose objects are
            all difficult are left out.

    Raises:
        ValueError: ``file:line`` of an unknown class, a malformed box or a box outside its image.
        FileNotFoundError: ``file:line`` of the split list where an image or annotation is missing.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_set: str | None = None,
        split_file: str | Path | None = None,
        masks: bool = True,
        difficult: bool = True,
    ) -> None:
        root = Path(root)
        split = image_set or split
        if not (root / "JPEGImages").is_dir() and (root / "VOC2012" / "JPEGImages").is_dir():
            root = root / "VOC2012"
        self.root = root
        self.class_names = VOC_CLASSES
        self.multilabel = True
        self.masks = masks
        if split_file is None:
            candidates = [root / "ImageSets" / "Segmentation" / f"{split}.txt"]
            if split == "train_aug":
                candidates.append(root / "ImageSets" / "SegmentationAug" / "train_aug.txt")
            split_file = next((c for c in candidates if c.is_file()), candidates[0])
        self.split_file = Path(split_file)
        index = {name: i for i, name in enumerate(VOC_CLASSES)}
        self.items: list[tuple[str, tuple[int, ...], np.ndarray, tuple[int, int]]] = []
        for number, image_id in read_split_ids(self.split_file):
            where = f"{self.split_file}:{number}"
            image, xml = root / "JPEGImages" / f"{image_id}.jpg", root / "Annotations" / f"{image_id}.xml"
            for path in (image, xml):
                if not path.is_file():
                    raise FileNotFoundError(f"{where}: {image_id!r} is listed but {path} does not exist")
            ann = parse_voc_xml(xml)
            width, height = ann.width or 0, ann.height or 0
            if not (width and height):  # a few third-party files omit <size>
                width, height = image_size(image)
            labels, boxes = set(), []
            for obj in ann.objects:
                if obj.name not in index:
                    raise ValueError(f"{xml}:{obj.name_line}: unknown class {obj.name!r} (not a VOC 2012 class)")
                if obj.difficult and not difficult:
                    continue
                labels.add(index[obj.name])
                if obj.box is None:
                    raise ValueError(f"{xml}:{obj.name_line}: object {obj.name!r} has no <bndbox>")
                x0, y0, x1, y1 = (v - 1 for v in obj.box)  # VOC pixels are 1-based
                if not (0 <= x0 <= x1 <= width - 1 and 0 <= y0 <= y1 <= height - 1):
                    raise ValueError(
                        f"{xml}:{obj.box_line}: box {list(obj.box)} (1-based) is inverted or outside the "
                        f"{width}x{height} image"
                    )
                boxes.append((x0, y0, x1, y1))
            if not ann.objects:
                raise ValueError(f"{xml}: no <object>, so {image_id!r} has no image-level label")
            if not labels:  # every object is difficult and difficult=False: nothing to learn from
                continue
            box_array = np.asarray(boxes, np.float32).reshape(-1, 4)
            self.items.append((image_id, tuple(sorted(labels)), box_array, (width, height)))

    def __len__(self) -> int:
        return len(self.items)

    def mask_path(self, image_id: str) -> Path | None:
        """``SegmentationClass`` PNG, else ``SegmentationClassAug`` PNG, else None."""
        for folder in ("SegmentationClass", "SegmentationClassAug"):
            path = self.root / folder / f"{image_id}.png"
            if path.is_file():
                return path
        return None

    def load(self, index: int) -> Sample:
        image_id, labels, boxes, size = self.items[index]
        image = load_rgb(self.root / "JPEGImages" / f"{image_id}.jpg")
        height, width = image.shape[:2]
        if (width, height) != size:
            xml = self.root / "Annotations" / f"{image_id}.xml"
            raise ValueError(f"{xml}: <size> says {size[0]}x{size[1]} but the image is {width}x{height}")
        mask = None
        path = self.mask_path(image_id) if self.masks else None
        if path is not None:
            mask = load_label_png(path)
            if mask.shape != (height, width):
                raise ValueError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}")
            bad = (mask > len(VOC_CLASSES)) & (mask != IGNORE_INDEX)
            if bad.any():
                raise ValueError(f"{path}: {int(bad.sum())} pixels hold values outside 0..20 and 255")
        return Sample(image=image, labels=labels, boxes=boxes, image_id=image_id, mask=mask)


@register_reader("voc")
def read_voc(
    root: str | Path | None,
    split: str,
    image_set: str | None = None,
    split_file: str | Path | None = None,
    masks: bool = True,
    difficult: bool = True,
) -> VOCDataset:
    """PASCAL VOC 2012 from ``root`` or ``$WSOL_DATA/VOC2012``."""
    return VOCDataset(resolve_root(root, "VOC2012"), split, image_set, split_file, masks, difficult)
