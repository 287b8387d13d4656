"""Reader for the Tiny ImageNet layout (any subset of its classes).

Layout: ``wnids.txt``, ``words.txt`` (optional), ``train/<wnid>/images/*.JPEG`` with
``train/<wnid>/<wnid>_boxes.txt`` (``file x0 y0 x1 y1``), and ``val/images/*.JPEG`` with
``val/val_annotations.txt`` (``file wnid x0 y0 x1 y1``). Boxes are inclusive pixel coordinates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsol.data._io import load_rgb, read_text
from wsol.data.datasets import SampleDataset, register_reader, resolve_root
from wsol.data.schema import Sample


def _read_rows(path: Path, fields: int) -> list[tuple[int, list[str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != fields:
            raise ValueError(f"{path}:{number}: expected {fields} fields, got {len(parts)}: {line!r}")
        rows.append((number, parts))
    return rows


def _box(path: Path, number: int, values: list[str]) -> np.ndarray:
    try:
        return np.array([float(v) for v in values], dtype=np.float32)[None]
    except ValueError as err:
        raise ValueError(f"{path}:{number}: box coordinates must be numbers, got {values}") from err


class TinyImageNet(SampleDataset):
    """Tiny ImageNet images with one GT box each.

    Args:
        root: the dataset folder (holding ``wnids.txt``).
        split: ``"train"`` or ``"val"``.
        limit_per_class: keep only the first N images of each class (in file order), e.g. 300 for the
            small-data regime.
    """

    def __init__(self, root: str | Path, split: str = "train", limit_per_class: int | None = None) -> None:
        root = Path(root)
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        wnids_file = root / "wnids.txt"
        if not wnids_file.is_file():
            raise FileNotFoundError(f"{wnids_file} not found: is {root} a Tiny ImageNet folder?")
        self.wnids = [w.strip() for w in read_text(wnids_file).split() if w.strip()]
        names = dict.fromkeys(self.wnids, "")
        words = root / "words.txt"
        if words.is_file():
            for line in read_text(words).splitlines():
                wnid, _, text = line.partition("\t")
                if wnid in names:
                    names[wnid] = text.split(",")[0].strip()
        self.class_names = tuple(names[w] or w for w in self.wnids)
        index = {w: i for i, w in enumerate(self.wnids)}
        self.items: list[tuple[Path, int, np.ndarray]] = []
        sources: list[str] = []  # "file:line" of each item, for error messages
        if split == "train":
            for wnid in self.wnids:
                boxes_file = root / "train" / wnid / f"{wnid}_boxes.txt"
                rows = _read_rows(boxes_file, 5)
                if not rows:
                    raise ValueError(f"{boxes_file}: no annotation lines: class {wnid} would have no images")
                for number, (name, *coords) in rows:
                    self.items.append(
                        (
                            root / "train" / wnid / "images" / name,
                            index[wnid],
                            _box(boxes_file, number, coords),
                        )
                    )
                    sources.append(f"{boxes_file}:{number}")
        else:
            ann = root / "val" / "val_annotations.txt"
            rows = _read_rows(ann, 6)
            if not rows:
                raise ValueError(f"{ann}: no annotation lines")
            for number, (name, wnid, *coords) in rows:
                if wnid not in index:
                    raise ValueError(f"{ann}:{number}: unknown class {wnid!r} (not in {wnids_file})")
                self.items.append((root / "val" / "images" / name, index[wnid], _box(ann, number, coords)))
                sources.append(f"{ann}:{number}")
        for (path, _, box), source in zip(self.items, sources, strict=True):
            if not path.is_file():
                raise FileNotFoundError(f"{source}: image not found: {path}")
            if (box[0, :2] < 0).any() or (box[0, 2:] < box[0, :2]).any():
                raise ValueError(f"{source}: box {box[0].tolist()} is negative or inverted")
        if limit_per_class is not None:
            kept, seen = [], dict.fromkeys(range(len(self.wnids)), 0)
            for item in self.items:
                if seen[item[1]] < limit_per_class:
                    kept.append(item)
                    seen[item[1]] += 1
            self.items = kept

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample:
        path, label, box = self.items[index]
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        image = load_rgb(path)  # a truncated or foreign file ends in one line naming it
        return Sample(image=image, labels=(label,), boxes=box, image_id=f"{path.parent.parent.name}/{path.name}")


@register_reader("tiny_imagenet")
def read_tiny_imagenet(root: str | Path | None, split: str, limit_per_class: int | None = None) -> TinyImageNet:
    """Tiny ImageNet from ``root`` or ``$WSOL_DATA/tiny_imagenet_10``."""
    return TinyImageNet(resolve_root(root, "tiny_imagenet_10"), split, limit_per_class=limit_per_class)
