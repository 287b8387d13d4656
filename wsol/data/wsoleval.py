"""Reader of the reference benchmark's metadata layout: CUB-200-2011, ImageNet (ILSVRC) and OpenImages30k.

Layout (the image ids of the metadata are paths relative to ``root``)::

    <root>/<image_id>                       images, e.g. 001.Black_footed_Albatross/x.jpg, val/ILSVRC2012_val_1.JPEG
    <metadata>/<split>/image_ids.txt        see wsol.data.wsoleval_metadata for the record formats
    <metadata>/<split>/class_labels.txt
    <metadata>/<split>/image_sizes.txt
    <metadata>/<split>/localization.txt     boxes (CUB, ILSVRC) or mask paths (OpenImages)
    <metadata>/class_names.txt              optional (wsol extension); else ``num_classes`` is needed
    <mask_root>/<mask path>                 OpenImages instance and ignore PNGs (mask_root defaults to root)

``metadata`` defaults to ``<root>/metadata``, which is where ``datasets/prepare_*.py`` write it; the
reference repository's own ``metadata/<CUB|ILSVRC|OpenImages>`` folder can be passed as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from wsol.data import wsoleval_metadata as md
from wsol.data._io import load_label_png, load_rgb, read_text, resize_nearest, tight_box
from wsol.data.datasets import SampleDataset, register_reader, resolve_root
from wsol.data.schema import IGNORE_INDEX, Sample


class WSOLEvalDataset(SampleDataset):
    """One split of a dataset described by wsolevaluation-style metadata.

    Boxes come from ``localization.txt``. With mask metadata (OpenImages) the sample's mask is the union of
    the instance PNGs (non-zero = object, as the reference's ``> 0.5`` on 0..255 gray levels) labelled
    ``label + 1``, ignore pixels (the ignore PNG minus the object) 255 and the rest 0; masks stored at
    another resolution than the image are resized to it (nearest). Boxes are then the tight bounds of
    each instance mask (derived, not annotated).

    Args:
        root: image root; image ids are relative to it.
        split: metadata split folder (``train``, ``val``, ``test``).
        metadata: folder holding the split folders (default ``<root>/metadata``).
        num_classes: number of classes when there is no ``class_names.txt``.
        mask_root: folder the mask paths are relative to (default ``root``).
        check_images: verify at construction that every listed image (and mask) exists; turn off only
            for very large splits on slow file systems (a missing file then fails when it is loaded).

    Raises:
        ValueError: ``file:line`` of a malformed record, an unknown class, a box outside its image or an
            image without a label or size.
        FileNotFoundError: ``file:line`` where a missing image or mask is listed.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        metadata: str | Path | None = None,
        num_classes: int | None = None,
        mask_root: str | Path | None = None,
        check_images: bool = True,
    ) -> None:
        self.root = Path(root)
        base = Path(metadata) if metadata is not None else self.root / "metadata"
        self.folder = base / split
        if not self.folder.is_dir():
            splits = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
            raise FileNotFoundError(f"metadata split not found: {self.folder} (splits in {base}: {splits})")
        names_file = base / "class_names.txt"
        if names_file.is_file():
            self.class_names = md.read_class_names(names_file)
            if num_classes is not None and num_classes != len(self.class_names):
                raise ValueError(f"{names_file} lists {len(self.class_names)} classes but num_classes={num_classes}")
        elif num_classes is not None:
            self.class_names = tuple(f"class_{i:03d}" for i in range(num_classes))
        else:
            raise ValueError(f"no {names_file}: pass num_classes= (the reference metadata has no class names)")
        self.multilabel = False
        self.mask_root = Path(mask_root) if mask_root is not None else self.root
        self.ids_file = self.folder / "image_ids.txt"
        self.image_ids = md.read_image_ids(self.ids_file)
        self.labels = md.read_class_labels(self.folder / "class_labels.txt", len(self.class_names))
        self.sizes = md.read_image_sizes(self.folder / "image_sizes.txt")
        for image_id in self.image_ids:
            for mapping, name in ((self.labels, "class_labels.txt"), (self.sizes, "image_sizes.txt")):
                if image_id not in mapping:
                    line = md.find_line(self.ids_file, image_id)
                    raise ValueError(f"{self.ids_file}:{line}: {image_id!r} has no entry in {self.folder / name}")
        loc = self.folder / "localization.txt"
        self.boxes: dict[str, list[md.Box]] = {}
        self.mask_paths: dict[str, list[str]] = {}
        self.ignore_paths: dict[str, str] = {}
        if loc.is_file() and _is_mask_file(loc):
            self.mask_paths, self.ignore_paths = md.read_mask_paths(loc)
        elif loc.is_file():
            self.boxes = md.read_localization(loc, self.sizes)
        for image_id in {**self.boxes, **self.mask_paths}:
            if image_id not in self.labels:
                line = md.find_line(loc, image_id)
                raise ValueError(f"{loc}:{line}: {image_id!r} is not listed in {self.ids_file}")
        if check_images:
            self._check_files(loc)

    def _check_files(self, loc: Path) -> None:
        for image_id in self.image_ids:
            if not (self.root / image_id).is_file():
                line = md.find_line(self.ids_file, image_id)
                raise FileNotFoundError(f"{self.ids_file}:{line}: image not found: {self.root / image_id}")
        for image_id, paths in self.mask_paths.items():
            for rel in [*paths, self.ignore_paths.get(image_id, "")]:
                if rel and not (self.mask_root / rel).is_file():
                    line = _line_with(loc, rel)
                    raise FileNotFoundError(f"{loc}:{line}: mask not found: {self.mask_root / rel}")

    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, index: int) -> Sample:
        image_id = self.image_ids[index]
        path = self.root / image_id
        if not path.is_file():
            line = md.find_line(self.ids_file, image_id)
            raise FileNotFoundError(f"{self.ids_file}:{line}: image not found: {path}")
        image = load_rgb(path)
        size = (image.shape[1], image.shape[0])
        if size != self.sizes[image_id]:
            sizes_file = self.folder / "image_sizes.txt"
            w, h = self.sizes[image_id]
            raise ValueError(
                f"{sizes_file}:{md.find_line(sizes_file, image_id)}: {image_id!r} is listed as {w}x{h} "
                f"but the image is {size[0]}x{size[1]}"
            )
        label = self.labels[image_id]
        boxes = np.asarray(self.boxes.get(image_id, []), np.float32).reshape(-1, 4)
        mask = None
        if image_id in self.mask_paths:
            mask, boxes = self._mask(image_id, label, size)
        return Sample(image=image, labels=(label,), boxes=boxes, image_id=image_id, mask=mask)

    def _read_mask(self, rel: str, size: tuple[int, int]) -> np.ndarray:
        path = self.mask_root / rel
        if not path.is_file():
            loc = self.folder / "localization.txt"
            raise FileNotFoundError(f"{loc}:{_line_with(loc, rel)}: mask not found: {path}")
        return resize_nearest(load_label_png(path), size) > 0

    def _mask(self, image_id: str, label: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        instances = [self._read_mask(rel, size) for rel in self.mask_paths[image_id]]
        foreground = np.logical_or.reduce(instances)
        mask = np.where(foreground, label + 1, 0).astype(np.uint8)
        if self.ignore_paths.get(image_id):
            ignore = self._read_mask(self.ignore_paths[image_id], size) & ~foreground
            mask[ignore] = IGNORE_INDEX
        boxes = [b for b in (tight_box(m) for m in instances) if b is not None]
        return mask, np.asarray(boxes, np.float32).reshape(-1, 4)


def _is_mask_file(path: Path) -> bool:
    """Whether a ``localization.txt`` holds mask paths (3 fields) rather than boxes (5 fields)."""
    for line in read_text(path).splitlines():
        if line.strip():
            return len(line.split(",")) == 3
    return False


def _line_with(path: Path, text: str) -> int:
    """Line number of the first record of ``path`` with a field equal to ``text`` (0 if none)."""
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if text in line.split(","):
            return number
    return 0


def _reader(folder: str, default_classes: int | None) -> Callable[..., WSOLEvalDataset]:
    """A reader of ``$WSOL_DATA/<folder>`` whose class count defaults to ``default_classes``."""

    def read(
        root: str | Path | None,
        split: str,
        metadata: str | Path | None = None,
        num_classes: int | None = None,
        mask_root: str | Path | None = None,
        check_images: bool = True,
    ) -> WSOLEvalDataset:
        """A split of ``root`` (or ``$WSOL_DATA/<folder>``); the options are :class:`WSOLEvalDataset`'s."""
        base = resolve_root(root, folder)
        names_file = Path(metadata if metadata is not None else base / "metadata") / "class_names.txt"
        if num_classes is None and not names_file.is_file():
            num_classes = default_classes
        return WSOLEvalDataset(base, split, metadata, num_classes, mask_root, check_images)

    return read


# The class counts are the reference datasets' and are used only when there is no class_names.txt.
read_wsoleval = register_reader("wsoleval")(_reader("wsoleval", None))
read_cub = register_reader("cub")(_reader("CUB", 200))
read_imagenet = register_reader("imagenet")(_reader("ILSVRC", 1000))
read_openimages = register_reader("openimages")(_reader("OpenImages", 100))
