"""Reader of a plain image folder, one sub-folder per class, with an optional CSV of boxes.

Layout::

    <root>/classes.txt                      optional: class names, one per line (index = line - 1)
    <root>/<split>/<class name>/<image>     .jpg .jpeg .png .bmp .webp (any case)
    <root>/<split>/boxes.csv                optional: ``path,x0,y0,x1,y1`` per box, inclusive pixels,
                                            path relative to <root>/<split>; a header line is allowed

Without ``classes.txt`` the classes are the sorted sub-folders of ``<root>/train`` (so every split shares
one index), or of the split itself when there is no train folder. Images without a box row get no box.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsol.data._io import image_size, load_rgb, read_text
from wsol.data.datasets import SampleDataset, register_reader, resolve_root
from wsol.data.schema import Sample
from wsol.data.wsoleval_metadata import read_class_names

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_HEADER = ("image", "path", "file", "filename", "image_id")


class ImageFolderDataset(SampleDataset):
    """Single-label images in class folders, with boxes from an optional CSV.

    Args:
        root: dataset folder.
        split: sub-folder of ``root`` (``train``, ``val``, ...).
        boxes: CSV file name inside the split folder (or an absolute path); missing = no boxes.

    Raises:
        ValueError: naming the folder of an unknown class, or ``file:line`` of a malformed box row, a box
            for an image that is not in the folder, or a box outside its image.
    """

    def __init__(self, root: str | Path, split: str = "train", boxes: str | Path = "boxes.csv") -> None:
        self.root = Path(root)
        self.split_dir = self.root / split
        if not self.split_dir.is_dir():
            raise FileNotFoundError(f"split folder not found: {self.split_dir}")
        names_file = self.root / "classes.txt"
        if names_file.is_file():
            self.class_names = read_class_names(names_file)
        else:
            source = self.root / "train" if (self.root / "train").is_dir() else self.split_dir
            self.class_names = tuple(sorted(p.name for p in source.iterdir() if p.is_dir()))
        if not self.class_names:
            raise ValueError(f"no class folders in {self.split_dir}")
        self.multilabel = False
        index = {name: i for i, name in enumerate(self.class_names)}
        self.items: list[tuple[str, int]] = []
        for folder in sorted(p for p in self.split_dir.iterdir() if p.is_dir()):
            if folder.name not in index:
                raise ValueError(f"{folder}: unknown class {folder.name!r} (classes: {', '.join(self.class_names)})")
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                    self.items.append((path.relative_to(self.split_dir).as_posix(), index[folder.name]))
        if not self.items:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {self.split_dir}")
        csv = Path(boxes) if Path(boxes).is_absolute() else self.split_dir / boxes
        self.boxes: dict[str, list[tuple[float, ...]]] = self._read_boxes(csv) if csv.is_file() else {}

    def _read_boxes(self, csv: Path) -> dict[str, list[tuple[float, ...]]]:
        known = {rel for rel, _ in self.items}
        boxes: dict[str, list[tuple[float, ...]]] = {}
        sizes: dict[str, tuple[int, int]] = {}
        for number, line in enumerate(read_text(csv).splitlines(), start=1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split(",")]
            if number == 1 and parts[0].lower() in _HEADER:
                continue
            where = f"{csv}:{number}"
            if len(parts) != 5:
                raise ValueError(f"{where}: expected 'path,x0,y0,x1,y1', got {line!r}")
            rel = parts[0]
            if rel not in known:
                raise ValueError(f"{where}: {rel!r} is not an image of {self.split_dir}")
            try:
                x0, y0, x1, y1 = (float(v) for v in parts[1:])
            except ValueError:
                raise ValueError(f"{where}: box coordinates must be numbers, got {parts[1:]}") from None
            if rel not in sizes:
                sizes[rel] = image_size(self.split_dir / rel)
            width, height = sizes[rel]
            if not (0 <= x0 <= x1 <= width - 1 and 0 <= y0 <= y1 <= height - 1):
                raise ValueError(f"{where}: box {[x0, y0, x1, y1]} is inverted or outside the {width}x{height} image")
            boxes.setdefault(rel, []).append((x0, y0, x1, y1))
        return boxes

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample:
        rel, label = self.items[index]
        image = load_rgb(self.split_dir / rel)
        boxes = np.asarray(self.boxes.get(rel, []), np.float32).reshape(-1, 4)
        return Sample(image=image, labels=(label,), boxes=boxes, image_id=rel)


@register_reader("folder")
def read_folder(root: str | Path | None, split: str, boxes: str | Path = "boxes.csv") -> ImageFolderDataset:
    """An image folder from ``root`` or ``$WSOL_DATA/folder``."""
    return ImageFolderDataset(resolve_root(root, "folder"), split, boxes)
