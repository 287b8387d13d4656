"""Turn official dataset archives into what the ``wsol`` readers read (used by ``datasets/prepare_*.py``).

* :func:`prepare_cub`: CUB-200-2011 (``images.txt``, ``bounding_boxes.txt``, ``train_test_split.txt``, ...)
  -> reference-style metadata;
* :func:`prepare_imagenet`: ILSVRC 2012 folders + PASCAL-style box XMLs -> reference-style metadata;
* :func:`prepare_openimages`: Open Images segmentation CSV + mask PNGs -> reference-style mask metadata;
* :func:`prepare_voc`: SBD -> ``SegmentationClassAug`` PNGs and the 10,582-image ``train_aug`` list;
* :func:`subset_tiny_imagenet`: a reproducible class subset of Tiny ImageNet (held-out class sets).
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from wsol.data._io import image_size, read_text
from wsol.data.voc import parse_voc_xml, read_split_ids
from wsol.data.wsoleval_metadata import MetadataRecord, write_metadata

__all__ = ["prepare_cub", "prepare_imagenet", "prepare_openimages", "prepare_voc"]


def _table(path: Path, fields: int) -> dict[str, list[str]]:
    """``first field -> other fields`` of a whitespace-separated CUB table; errors name ``file:line``."""
    if not path.is_file():
        raise FileNotFoundError(f"CUB file not found: {path}")
    rows: dict[str, list[str]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=fields - 1)
        if len(parts) != fields:
            raise ValueError(f"{path}:{number}: expected {fields} fields, got {line!r}")
        rows[parts[0]] = parts[1:]
    return rows


def _sizes(paths: Iterable[Path], workers: int) -> list[tuple[int, int]]:
    with ThreadPoolExecutor(max(1, workers)) as pool:  # header reads are I/O bound
        return list(pool.map(image_size, paths))


def prepare_cub(cub_dir: str | Path, out: str | Path | None = None, workers: int = 8) -> dict[str, int]:
    """Write ``train``/``test`` metadata for CUB-200-2011 from its official text files.

    Boxes ``x y w h`` (continuous) become inclusive ``[x, y, x + w - 1, y + h - 1]``, clipped to the image.
    Image ids are relative to ``<cub_dir>/images``, as the reference's.

    Args:
        cub_dir: the extracted ``CUB_200_2011`` folder.
        out: metadata folder (default ``<cub_dir>/images/metadata``, where the ``cub`` reader looks).
        workers: threads reading image headers for ``image_sizes.txt``.

    Returns:
        Number of images per split.
    """
    cub = Path(cub_dir)
    images = _table(cub / "images.txt", 2)
    labels = _table(cub / "image_class_labels.txt", 2)
    split = _table(cub / "train_test_split.txt", 2)
    boxes = _table(cub / "bounding_boxes.txt", 5)
    classes = _table(cub / "classes.txt", 2)
    names = [classes[k][0] for k in sorted(classes, key=int)]
    out = Path(out) if out is not None else cub / "images" / "metadata"
    order = sorted(images, key=int)
    for key in order:
        for table, name in (
            (labels, "image_class_labels.txt"),
            (split, "train_test_split.txt"),
            (boxes, "bounding_boxes.txt"),
        ):
            if key not in table:
                raise ValueError(f"{cub / name}: no entry for image {key} of {cub / 'images.txt'}")
    sizes = _sizes([cub / "images" / images[k][0] for k in order], workers)
    per_split: dict[str, list[MetadataRecord]] = {"train": [], "test": []}
    for key, (width, height) in zip(order, sizes, strict=True):
        x, y, w, h = (float(v) for v in boxes[key])
        box = [max(0.0, x), max(0.0, y), min(width - 1.0, x + w - 1), min(height - 1.0, y + h - 1)]
        record = MetadataRecord(images[key][0], int(labels[key][0]) - 1, (width, height), [box])
        per_split["train" if split[key][0] == "1" else "test"].append(record)
    for name, records in per_split.items():
        write_metadata(out / name, records, names)
    return {k: len(v) for k, v in per_split.items()}


def _imagenet_boxes(xml: Path, width: int, height: int) -> tuple[str, list[list[float]]]:
    """Class wnid and boxes of an ImageNet box XML, clipped to the image (ImageNet has ``xmax == W`` boxes)."""
    ann = parse_voc_xml(xml)
    names = {o.name for o in ann.objects}
    if len(names) != 1:
        raise ValueError(f"{xml}: expected objects of one class, got {sorted(names)}")
    out = []
    for obj in ann.objects:
        if obj.box is None:
            raise ValueError(f"{xml}:{obj.name_line}: object without <bndbox>")
        x0, y0, x1, y1 = obj.box
        out.append([max(0.0, x0), max(0.0, y0), min(width - 1.0, x1), min(height - 1.0, y1)])
    return names.pop(), out


def prepare_imagenet(
    ilsvrc_dir: str | Path,
    val_boxes: str | Path,
    train_boxes: str | Path | None = None,
    synsets: str | Path | None = None,
    out: str | Path | None = None,
    workers: int = 8,
) -> dict[str, int]:
    """Write ``train`` and ``test`` (= the official validation set) metadata for ILSVRC 2012.

    Classes are the sorted wnids of ``train/`` (the usual index); image ids are ``train/<wnid>/<file>`` and
    ``val/<file>``. Validation labels come from its box XMLs (``ILSVRC2012_bbox_val_v3``: one XML per image);
    training boxes, when given (``Annotation/<wnid>/<id>.xml``), are attached to the images that have one.

    Args:
        ilsvrc_dir: folder with ``train/<wnid>/*.JPEG`` and ``val/*.JPEG``.
        val_boxes: folder of the validation XMLs.
        train_boxes: folder of the training XMLs (optional).
        synsets: ``LOC_synset_mapping.txt``-style ``wnid name, ...`` lines for class names (optional).
        out: metadata folder (default ``<ilsvrc_dir>/metadata``).
        workers: threads reading image headers.
    """
    root = Path(ilsvrc_dir)
    wnids = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    index = {w: i for i, w in enumerate(wnids)}
    names = list(wnids)
    if synsets is not None:
        text = dict(line.split(maxsplit=1) for line in Path(synsets).read_text().splitlines() if line.strip())
        names = [text.get(w, w).split(",")[0].strip() for w in wnids]
    out = Path(out) if out is not None else root / "metadata"
    train_ids = [f"train/{w}/{p.name}" for w in wnids for p in sorted((root / "train" / w).iterdir()) if p.is_file()]
    records = []
    for image_id, size in zip(train_ids, _sizes([root / i for i in train_ids], workers), strict=True):
        wnid, stem = image_id.split("/")[1], Path(image_id).stem
        xml = Path(train_boxes) / wnid / f"{stem}.xml" if train_boxes is not None else None
        boxes = _imagenet_boxes(xml, *size)[1] if xml is not None and xml.is_file() else []
        records.append(MetadataRecord(image_id, index[wnid], size, boxes))
    write_metadata(out / "train", records, names)
    val_files = sorted(p.name for p in (root / "val").iterdir() if p.is_file())
    records = []
    for name, size in zip(val_files, _sizes([root / "val" / f for f in val_files], workers), strict=True):
        xml = Path(val_boxes) / f"{Path(name).stem}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"no box XML for val/{name}: {xml}")
        wnid, boxes = _imagenet_boxes(xml, *size)
        if wnid not in index:
            raise ValueError(f"{xml}: unknown class {wnid!r} (not a folder of {root / 'train'})")
        records.append(MetadataRecord(f"val/{name}", index[wnid], size, boxes))
    write_metadata(out / "test", records)
    return {"train": len(train_ids), "test": len(val_files)}


def prepare_openimages(
    root: str | Path,
    split: str,
    segmentation_csv: str | Path,
    classes: str | Path,
    masks_dir: str | Path,
    out: str | Path | None = None,
    workers: int = 8,
) -> int:
    """Write mask metadata for one Open Images split in the reference's format.

    Keeps images whose instance masks (``MaskPath, ImageID, LabelName`` columns of the official
    ``*-annotations-object-segmentation.csv``) all belong to one of the listed classes and whose image file
    exists (the CSV covers the whole split; a local download may hold a subset). Each image gets an
    all-zero ignore PNG under ``<root>/ignore/<split>/`` (the reference needs one per image, issue #33).

    Args:
        root: image root; images are ``<root>/<split>/<ImageID>.jpg``.
        split: ``train``, ``val`` or ``test``.
        segmentation_csv: the official segmentation CSV.
        classes: file with one ``LabelName`` (MID) per line, optionally ``MID,display name``.
        masks_dir: folder of the extracted mask PNGs, inside ``root``.
        out: metadata folder (default ``<root>/metadata``).
        workers: threads reading image headers.

    Returns:
        Number of images written.
    """
    root, masks_dir = Path(root), Path(masks_dir)
    try:
        masks_rel = masks_dir.resolve().relative_to(root.resolve())
    except ValueError:
        raise ValueError(f"masks_dir {masks_dir} must lie inside the image root {root}") from None
    mids, names = [], []
    for line in Path(classes).read_text().splitlines():
        if line.strip():
            mid, _, name = line.partition(",")
            mids.append(mid.strip())
            names.append(name.strip() or mid.strip())
    index = {m: i for i, m in enumerate(mids)}
    per_image: dict[str, list[tuple[str, str]]] = {}
    with open(segmentation_csv, newline="") as f:
        for number, row in enumerate(csv.DictReader(f), start=2):
            try:
                per_image.setdefault(row["ImageID"], []).append((row["LabelName"], row["MaskPath"]))
            except KeyError as err:
                raise ValueError(f"{segmentation_csv}:{number}: missing column {err.args[0]!r}") from None
    kept = {
        i: rows
        for i, rows in sorted(per_image.items())
        if len({m for m, _ in rows}) == 1 and rows[0][0] in index and (root / split / f"{i}.jpg").is_file()
    }
    ids = list(kept)
    sizes = _sizes([root / split / f"{i}.jpg" for i in ids], workers)
    records = []
    for image_id, (width, height) in zip(ids, sizes, strict=True):
        ignore = Path("ignore") / split / f"{image_id}.png"
        (root / ignore).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((height, width), np.uint8)).save(root / ignore)
        paths = [(masks_rel / p).as_posix() for _, p in kept[image_id]]
        label = index[kept[image_id][0][0]]
        records.append(
            MetadataRecord(f"{split}/{image_id}.jpg", label, (width, height), masks=paths, ignore=ignore.as_posix())
        )
    write_metadata((Path(out) if out is not None else root / "metadata") / split, records, names)
    return len(records)


def _sbd_mask(path: Path) -> np.ndarray:
    try:
        from scipy.io import loadmat
    except ImportError as err:  # scipy is needed only here
        raise ImportError("converting SBD .mat files needs scipy: pip install scipy") from err
    mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    if "GTcls" not in mat:
        raise ValueError(f"{path}: no 'GTcls' struct (not an SBD cls file)")
    return np.asarray(mat["GTcls"].Segmentation, dtype=np.uint8)


def prepare_voc(voc_dir: str | Path, sbd_dir: str | Path) -> int:
    """Add SBD to VOC 2012: ``SegmentationClassAug/<id>.png`` and ``ImageSets/Segmentation/train_aug.txt``.

    ``train_aug`` = (SBD train + SBD val + VOC train) - VOC val, the 10,582 images of psa/SEAM. VOC's own
    masks win where both exist; SBD masks carry no 255 border.

    Args:
        voc_dir: the ``VOC2012`` folder.
        sbd_dir: SBD's ``dataset`` folder (``cls/*.mat``, ``train.txt``, ``val.txt``).

    Returns:
        Number of images in ``train_aug``.
    """
    voc, sbd = Path(voc_dir), Path(sbd_dir)
    seg = voc / "ImageSets" / "Segmentation"
    val = {i for _, i in read_split_ids(seg / "val.txt")}
    ids = {i for _, i in read_split_ids(seg / "train.txt")}
    for name in ("train.txt", "val.txt"):
        ids |= {i for _, i in read_split_ids(sbd / name)}
    aug = sorted(ids - val)
    out_dir = voc / "SegmentationClassAug"
    out_dir.mkdir(exist_ok=True)
    for image_id in aug:
        target = out_dir / f"{image_id}.png"
        voc_mask = voc / "SegmentationClass" / f"{image_id}.png"
        if voc_mask.is_file():
            with Image.open(voc_mask) as im:
                Image.fromarray(np.asarray(im).astype(np.uint8)).save(target)
        elif (sbd / "cls" / f"{image_id}.mat").is_file():
            Image.fromarray(_sbd_mask(sbd / "cls" / f"{image_id}.mat")).save(target)
        else:
            raise FileNotFoundError(f"no mask for {image_id}: neither {voc_mask} nor {sbd / 'cls' / image_id}.mat")
    (seg / "train_aug.txt").write_text("".join(f"{i}\n" for i in aug))
    return len(aug)


def subset_tiny_imagenet(
    source: str | Path,
    out: str | Path,
    classes: int = 10,
    seed: int = 0,
    exclude: Iterable[str] = (),
    wnids: Iterable[str] | None = None,
) -> list[str]:
    """Copy a class subset of a full Tiny ImageNet folder into ``out`` (train, val, ``wnids.txt``, ``words.txt``).

    The subset is ``wnids`` when given, else ``classes`` classes drawn with ``seed`` from the source's
    ``wnids.txt`` minus ``exclude`` (for example the classes a study was tuned on), so a held-out set is
    reproducible from its seed. Val annotations are filtered to the subset; files are copied, never moved.
    Returns the chosen wnids (sorted).
    """
    source, out = Path(source), Path(out)
    available = [w for w in read_text(source / "wnids.txt").split() if w.strip()]
    if wnids is not None:
        chosen = sorted(dict.fromkeys(wnids))
        missing = [w for w in chosen if w not in available]
        if missing:
            raise ValueError(f"{source / 'wnids.txt'} does not list {', '.join(missing)}")
    else:
        excluded = set(exclude)
        pool = sorted(w for w in available if w not in excluded)
        if classes < 1 or classes > len(pool):
            raise ValueError(f"classes={classes}: {source} has {len(pool)} classes outside the excluded ones")
        chosen = sorted(np.random.default_rng(seed).choice(pool, size=classes, replace=False).tolist())
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: choose a new folder")
    for wnid in chosen:
        shutil.copytree(source / "train" / wnid, out / "train" / wnid)
    keep = set(chosen)
    rows = []
    (out / "val" / "images").mkdir(parents=True)
    for number, line in enumerate(read_text(source / "val" / "val_annotations.txt").splitlines(), 1):
        fields = line.split()
        if len(fields) != 6:
            raise ValueError(f"{source / 'val' / 'val_annotations.txt'}:{number}: expected 6 fields, got {len(fields)}")
        if fields[1] in keep:
            shutil.copy2(source / "val" / "images" / fields[0], out / "val" / "images" / fields[0])
            rows.append(line)
    (out / "val" / "val_annotations.txt").write_text("\n".join(rows) + "\n")
    (out / "wnids.txt").write_text("\n".join(chosen) + "\n")
    words = source / "words.txt"
    if words.is_file():
        lines = [line for line in read_text(words).splitlines() if line.split("\t", 1)[0] in keep]
        (out / "words.txt").write_text("\n".join(lines) + "\n")
    return chosen
