"""Parse and write the reference benchmark's metadata (clovaai/wsolevaluation ``metadata/<dataset>/<split>/``).

One folder per split holds comma-separated text files, one record per line:

* ``image_ids.txt``: ``image_id`` (a path relative to the image root, e.g. ``001.Black_footed_Albatross/x.jpg``);
* ``class_labels.txt``: ``image_id,label`` (0-based class index);
* ``image_sizes.txt``: ``image_id,width,height``;
* ``localization.txt``, boxes (CUB, ILSVRC): ``image_id,x0,y0,x1,y1`` in inclusive pixels of the original
  image, one line per box; masks (OpenImages): ``image_id,mask_path,ignore_path``, one line per instance
  mask, the ignore path given on the image's first line only.

``class_names.txt`` beside the split folders (one name per line, index = line number - 1) is a ``wsol``
extension written by the preparation scripts; the reference has no class-name file.

Every function raises ``ValueError`` naming ``file:line`` for a malformed record, so a broken annotation is
found without a debugger. The functions are pure (a path in, Python values out) so that the evaluator and
the dataset readers share one parser.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from wsol.atomic import write_text
from wsol.data._io import read_text

__all__ = [
    "MetadataRecord",
    "find_line",
    "read_class_labels",
    "read_class_names",
    "read_image_ids",
    "read_image_sizes",
    "read_localization",
    "read_mask_paths",
    "write_metadata",
]

Box = tuple[float, float, float, float]


def _rows(path: str | Path, fields: int | tuple[int, ...]) -> list[tuple[int, list[str]]]:
    """Non-empty lines of ``path`` split on commas, with their 1-based line numbers."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metadata file not found: {path}")
    allowed = (fields,) if isinstance(fields, int) else fields
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) not in allowed:
            expected = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{path}:{number}: expected {expected} comma-separated fields, got {len(parts)}: {line!r}")
        if not parts[0]:
            raise ValueError(f"{path}:{number}: empty image id: {line!r}")
        rows.append((number, parts))
    return rows


def _number(path: Path, number: int, text: str, kind: type = float) -> float:
    try:
        return kind(text)
    except ValueError as err:
        raise ValueError(f"{path}:{number}: expected a number, got {text!r}") from err


def find_line(path: str | Path, image_id: str) -> int:
    """Line number (1-based) of the first record of ``image_id`` in ``path``, 0 if absent.

    Used to point at the offending line when a problem is found after parsing (e.g. an image whose real
    size differs from ``image_sizes.txt``).
    """
    for number, line in enumerate(read_text(Path(path)).splitlines(), start=1):
        if line.split(",")[0].strip() == image_id:
            return number
    return 0


def read_image_ids(path: str | Path) -> list[str]:
    """Image ids of ``image_ids.txt`` in file order.

    Raises:
        ValueError: ``file:line`` for a duplicate id or a line with a comma.
    """
    seen: dict[str, int] = {}
    for number, (image_id,) in _rows(path, 1):
        if image_id in seen:
            raise ValueError(f"{path}:{number}: duplicate image id {image_id!r} (first on line {seen[image_id]})")
        seen[image_id] = number
    return list(seen)


def read_class_labels(path: str | Path, num_classes: int | None = None) -> dict[str, int]:
    """``image_id -> label`` from ``class_labels.txt``.

    Args:
        path: the file.
        num_classes: if given, labels must lie in ``[0, num_classes)``.

    Raises:
        ValueError: ``file:line`` for a non-integer, negative or unknown label, or a repeated id.
    """
    path = Path(path)
    labels: dict[str, int] = {}
    for number, (image_id, text) in _rows(path, 2):
        label = int(_number(path, number, text, int))
        if label < 0 or (num_classes is not None and label >= num_classes):
            known = f"[0, {num_classes})" if num_classes is not None else ">= 0"
            raise ValueError(f"{path}:{number}: unknown class {label} for {image_id!r} (labels must be {known})")
        if image_id in labels:
            raise ValueError(f"{path}:{number}: {image_id!r} has a second class label (single-label metadata)")
        labels[image_id] = label
    return labels


def read_image_sizes(path: str | Path) -> dict[str, tuple[int, int]]:
    """``image_id -> (width, height)`` from ``image_sizes.txt``.

    Raises:
        ValueError: ``file:line`` for a non-integer or non-positive size, or a repeated id.
    """
    path = Path(path)
    sizes: dict[str, tuple[int, int]] = {}
    for number, (image_id, w, h) in _rows(path, 3):
        width, height = int(_number(path, number, w, int)), int(_number(path, number, h, int))
        if width <= 0 or height <= 0:
            raise ValueError(f"{path}:{number}: image size must be positive, got {width}x{height}")
        if image_id in sizes:
            raise ValueError(f"{path}:{number}: {image_id!r} has a second size")
        sizes[image_id] = (width, height)
    return sizes


def read_localization(path: str | Path, sizes: dict[str, tuple[int, int]] | None = None) -> dict[str, list[Box]]:
    """``image_id -> boxes`` from a box ``localization.txt`` (several lines per image = several boxes).

    Args:
        path: the file.
        sizes: ``image_id -> (width, height)``; if given, every box must lie inside its image
            (``0 <= x0 <= x1 <= W - 1``, likewise y) and every id must have a size.

    Raises:
        ValueError: ``file:line`` for a malformed number, an inverted box or a box outside its image.
    """
    path = Path(path)
    boxes: dict[str, list[Box]] = {}
    for number, (image_id, *coords) in _rows(path, 5):
        x0, y0, x1, y1 = (_number(path, number, c) for c in coords)
        if not (0 <= x0 <= x1 and 0 <= y0 <= y1):
            raise ValueError(f"{path}:{number}: box {[x0, y0, x1, y1]} is inverted or negative (x0 <= x1, y0 <= y1)")
        if sizes is not None:
            if image_id not in sizes:
                raise ValueError(f"{path}:{number}: {image_id!r} has no entry in image_sizes.txt")
            width, height = sizes[image_id]
            if x1 > width - 1 or y1 > height - 1:
                raise ValueError(
                    f"{path}:{number}: box {[x0, y0, x1, y1]} lies outside the {width}x{height} image {image_id!r}"
                )
        boxes.setdefault(image_id, []).append((x0, y0, x1, y1))
    return boxes


def read_mask_paths(path: str | Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Instance-mask and ignore-mask paths from a mask ``localization.txt`` (OpenImages).

    Returns:
        ``(mask_paths, ignore_paths)``: ``image_id -> [mask path, ...]`` and ``image_id -> ignore path``
        (``""`` where the image has none; the reference crashes on that, issue #33).

    Raises:
        ValueError: ``file:line`` for an empty mask path, or an ignore path on an image's later line.
    """
    path = Path(path)
    masks: dict[str, list[str]] = {}
    ignores: dict[str, str] = {}
    for number, (image_id, mask_path, ignore_path) in _rows(path, 3):
        if not mask_path:
            raise ValueError(f"{path}:{number}: empty mask path for {image_id!r}")
        for given in (mask_path, ignore_path):
            # Mask paths are relative to the dataset's mask folder: nothing outside it is read.
            if given and (PurePosixPath(given).is_absolute() or ".." in PurePosixPath(given).parts):
                raise ValueError(f"{path}:{number}: mask path {given!r} must be relative, inside the dataset folder")
        if image_id in masks:
            if ignore_path:
                raise ValueError(f"{path}:{number}: ignore mask of {image_id!r} given again (only on its first line)")
            masks[image_id].append(mask_path)
        else:
            masks[image_id] = [mask_path]
            ignores[image_id] = ignore_path
    return masks, ignores


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """Class names of ``class_names.txt`` (index = line number - 1); blank lines are errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class names file not found: {path}")
    names = read_text(path).splitlines()
    while names and not names[-1].strip():
        names.pop()
    for number, name in enumerate(names, start=1):
        if not name.strip():
            raise ValueError(f"{path}:{number}: empty class name")
    return tuple(n.strip() for n in names)


@dataclass
class MetadataRecord:
    """One image of a metadata split, for :func:`write_metadata`.

    Attributes:
        image_id: path relative to the image root.
        label: 0-based class index.
        size: ``(width, height)``.
        boxes: inclusive ``x0, y0, x1, y1`` boxes (box metadata).
        masks: instance-mask paths relative to the mask root (mask metadata).
        ignore: ignore-mask path relative to the mask root, or ``""``.
    """

    image_id: str
    label: int
    size: tuple[int, int]
    boxes: Sequence[Sequence[float]] = field(default_factory=list)
    masks: Sequence[str] = field(default_factory=list)
    ignore: str = ""


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_metadata(
    folder: str | Path, records: Iterable[MetadataRecord], class_names: Sequence[str] | None = None
) -> Path:
    """Write one split's ``image_ids/class_labels/image_sizes/localization.txt`` into ``folder``.

    ``localization.txt`` holds boxes, or mask paths when any record has masks (then every record needs one).
    With ``class_names``, ``class_names.txt`` is written into the parent folder (shared by all splits).

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = list(records)
    use_masks = any(r.masks for r in records)
    ids, labels, sizes, loc = [], [], [], []
    for r in records:
        if "," in r.image_id:
            raise ValueError(f"image id {r.image_id!r} contains a comma, which the metadata format cannot hold")
        ids.append(r.image_id)
        labels.append(f"{r.image_id},{r.label}")
        sizes.append(f"{r.image_id},{r.size[0]},{r.size[1]}")
        if use_masks:
            if not r.masks:
                raise ValueError(f"{r.image_id}: mask metadata needs at least one mask per image")
            loc += [f"{r.image_id},{m},{r.ignore if i == 0 else ''}" for i, m in enumerate(r.masks)]
        else:
            loc += [f"{r.image_id}," + ",".join(_fmt(v) for v in box) for box in r.boxes]
    for name, lines in (("image_ids", ids), ("class_labels", labels), ("image_sizes", sizes), ("localization", loc)):
        write_text(folder / f"{name}.txt", "".join(line + "\n" for line in lines))
    if class_names is not None:
        write_text(folder.parent / "class_names.txt", "".join(f"{n}\n" for n in class_names))
    return folder
