"""Inputs of ``wsol evaluate``: the reference's metadata layout with ``.npy`` score maps, or one ``.npz``.

A source lists image ids and loads, per image, a validated float score map, its GT boxes in score-map
pixels and/or its GT mask (0 background, 1 object, 255 ignore), and whether its top-1 class is right.
Sources are small, picklable descriptions (paths and parsed text) so that worker processes rebuild what
they need themselves.

By default the stored maps are score maps already (floats in [0, 1]). A source given a ``normalization``
reads them as raw maps instead (any sign and range) and turns each into a score map with
:func:`wsol.metrics.normalize_scoremaps` (Kim et al., ICCV 2021, arXiv 2107.13221).

Bad input raises ``ValueError`` or ``FileNotFoundError`` naming the image id and the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wsol.data import wsoleval_metadata as md
from wsol.data._io import read_text, resize_nearest
from wsol.evaluation.npz import NpyMember, NpzArchive
from wsol.evaluation.reference_output import MANIFEST, is_unfinished
from wsol.metrics import (
    DEFAULT_PERCENTILE,
    check_normalization,
    normalize_scoremaps,
    resize_gt_boxes,
    upsample_cam_numpy,
)

__all__ = ["ImageInput", "MetadataSource", "NpyMember", "NpzSource", "Source", "prepare_loaded_scoremap"]


@dataclass
class ImageInput:
    """What the evaluator needs for one image.

    Attributes:
        image_id: The image id.
        scoremap: ``(H, W)`` float map in [0, 1].
        boxes: ``(k, 4)`` int64 GT boxes in score-map pixels, or None.
        mask: ``(H, W)`` uint8 GT mask (0/1/255), or None.
        cls_correct: Whether the top-1 class is right, or None when unknown.
        degenerate: The map was constant or all-NaN and is evaluated as all zeros (docs/protocol.md §1.4).
    """

    image_id: str
    scoremap: np.ndarray
    boxes: np.ndarray | None = None
    mask: np.ndarray | None = None
    cls_correct: bool | None = None
    degenerate: bool = False


def prepare_loaded_scoremap(
    scoremap: np.ndarray,
    image_id: str,
    where: str,
    normalization: str | None = None,
    percentile: float = DEFAULT_PERCENTILE,
) -> tuple[np.ndarray, bool]:
    """Validate a loaded map; constant and all-NaN maps become all zeros (docs/protocol.md §1.4).

    Args:
        scoremap: The stored ``(H, W)`` map.
        image_id: Its image id, for error messages.
        where: Its file (and key), for error messages.
        normalization: None: the map is a score map in [0, 1] already. Otherwise the map is raw (any sign and
            range) and is normalised by this rule of :data:`wsol.metrics.NORMALIZATIONS`; a map with NaN or
            ±inf anywhere, or one the rule leaves all zero (constant; no positive value under ``max``),
            becomes all zeros.
        percentile: IVR's percentile (``normalization="ivr"`` only).

    Returns:
        The map and whether it was such a degenerate map.

    Raises:
        ValueError: Not 2-D, not a float array (raw maps may also be integers), or, for score maps, some (not
            all) NaN or values outside [0, 1].
    """
    if scoremap.ndim != 2:
        raise ValueError(f"score map of {image_id!r} ({where}) must be 2-D, got shape {scoremap.shape}")
    if normalization is not None:
        if scoremap.dtype.kind not in "fiu":
            raise ValueError(f"raw map of {image_id!r} ({where}) must hold numbers, got dtype {scoremap.dtype}")
        normalized = normalize_scoremaps(scoremap, normalization, percentile)
        # Every rule maps a usable map to one whose maximum is positive; all zeros means the map was dropped.
        return normalized, not normalized.any()
    if scoremap.dtype.kind != "f":
        raise ValueError(f"score map of {image_id!r} ({where}) must hold floats in [0, 1], got dtype {scoremap.dtype}")
    nan = np.isnan(scoremap)
    if nan.all():
        return np.zeros(scoremap.shape, np.float64), True
    if nan.any():
        raise ValueError(f"score map of {image_id!r} ({where}) contains {int(nan.sum())} NaN values")
    low, high = float(scoremap.min()), float(scoremap.max())
    if low < 0 or high > 1:
        raise ValueError(f"score map of {image_id!r} ({where}) has values outside [0, 1] (min {low:g}, max {high:g})")
    if low == high:
        return np.zeros(scoremap.shape, np.float64), True
    return scoremap, False


def upsample_raw_map(raw: np.ndarray, size: int, image_id: str, where: str) -> np.ndarray:
    """A raw map of any size (e.g. 7x7 from another library) at ``size x size`` the protocol's way
    (:func:`wsol.metrics.upsample_cam_numpy`). Normalisation follows.

    Raises:
        ValueError: the map is not 2-D or does not hold numbers.
    """
    if raw.ndim != 2:
        raise ValueError(f"raw map of {image_id!r} ({where}) must be 2-D, got shape {raw.shape}")
    if raw.dtype.kind not in "fiu":
        raise ValueError(f"raw map of {image_id!r} ({where}) must hold numbers, got dtype {raw.dtype}")
    if raw.size == 0:
        raise ValueError(f"raw map of {image_id!r} ({where}) is empty (shape {raw.shape}); nothing to upsample")
    return upsample_cam_numpy(raw, (size, size))


MIN_UPSAMPLE = 16  # the smallest score-map side --upsample accepts


def _check_upsample(upsample: int | None, normalization: str | None) -> str | None:
    """The normalisation to apply: with ``upsample`` the maps are raw, so min-max unless another rule is given."""
    if upsample is None:
        return normalization
    if isinstance(upsample, bool) or not isinstance(upsample, int) or upsample < MIN_UPSAMPLE:
        # A side of 1 or 2 pixels makes every box match (100.00): a typo, not a protocol.
        raise ValueError(
            f"upsample must be an int >= {MIN_UPSAMPLE} (the score-map side, 224 in the protocol), got {upsample!r}"
        )
    return normalization or "minmax"


class Source:
    """Base class: ``image_ids``, ``has_boxes``, ``has_masks``, ``has_classes`` and ``load(i)``.

    ``normalization`` (None: the maps are score maps already) and ``percentile`` say how raw maps become score
    maps; the evaluation result records them.
    """

    image_ids: list[str]
    has_boxes: bool
    has_masks: bool
    has_classes: bool
    normalization: str | None = None
    percentile: float = DEFAULT_PERCENTILE

    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, index: int, boxes: bool = True, masks: bool = True) -> ImageInput:
        """Load image ``index`` (boxes and/or masks only when asked for)."""
        raise NotImplementedError

    def preload(self) -> None:
        """Read what every image needs now (forked workers then share it instead of reading it again)."""

    def describe(self) -> dict:
        """JSON-ready description of where the inputs came from."""
        raise NotImplementedError

    def gt_where(self, kind: str) -> str:
        """Where the GT ``kind`` (``"boxes"`` or ``"masks"``) is read from, for error messages."""
        return str(self.describe())


def _read_gray(path: Path, image_id: str, what: str) -> np.ndarray:
    # cv2.imread(GRAYSCALE), as the reference's load_mask_image: palette PNGs are read as gray levels.
    if not path.is_file():
        raise FileNotFoundError(f"{what} of {image_id!r} not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"{what} of {image_id!r} could not be decoded: {path}")
    return image


@dataclass
class MetadataSource(Source):
    """A metadata split folder (``image_ids.txt``, ``class_labels.txt``, ``image_sizes.txt``,
    ``localization.txt``) plus a folder of ``<image_id>.npy`` score maps.

    Args:
        metadata: The split folder.
        scoremaps: Folder of score maps named ``<image_id>.npy`` (e.g. ``x.jpg.npy``, reference issue #32).
        mask_root: Folder the mask paths of a mask ``localization.txt`` are relative to (default: the
            metadata folder).
        predictions: Optional ``image_id,predicted_label`` file for Top-1 Loc.
        normalization: None (the maps are score maps in [0, 1]) or the rule that turns the raw maps into score
            maps (see :func:`prepare_loaded_scoremap`).
        percentile: IVR's percentile.
        upsample: None, or the side ``S``: every map (of any size, raw) is upsampled to ``S x S`` the protocol's
            way (:func:`upsample_raw_map`) and normalised (min-max unless ``normalization`` says otherwise), and
            the GT is mapped onto ``S x S`` — how maps from other libraries are scored like wsol's own.
    """

    metadata: Path
    scoremaps: Path
    mask_root: Path | None = None
    predictions: Path | None = None
    normalization: str | None = None
    percentile: float = DEFAULT_PERCENTILE
    upsample: int | None = None
    image_ids: list[str] = field(init=False)
    boxes: dict[str, list] = field(init=False, default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(init=False, default_factory=dict)
    mask_paths: dict[str, list[str]] = field(init=False, default_factory=dict)
    ignore_paths: dict[str, str] = field(init=False, default_factory=dict)
    correct: dict[str, bool] = field(init=False, default_factory=dict)
    shape: tuple[int, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self.normalization = _check_upsample(self.upsample, self.normalization)
        if self.normalization is not None:
            check_normalization(self.normalization, self.percentile)
        self.metadata, self.scoremaps = Path(self.metadata), Path(self.scoremaps)
        if is_unfinished(self.scoremaps.parent):
            # wsol cams and wsol predict write the manifest first and complete it last: this run never finished.
            raise ValueError(
                f"{self.scoremaps.parent / MANIFEST}: the run that wrote {self.scoremaps} did not finish; "
                "rerun it with --overwrite"
            )
        if not self.metadata.is_dir():
            raise FileNotFoundError(f"metadata folder not found: {self.metadata}")
        if not self.scoremaps.is_dir():
            raise FileNotFoundError(f"score-map folder not found: {self.scoremaps}")
        self.mask_root = Path(self.mask_root) if self.mask_root is not None else self.metadata
        self.image_ids = md.read_image_ids(self.metadata / "image_ids.txt")
        if not self.image_ids:
            raise ValueError(f"{self.metadata / 'image_ids.txt'} lists no images")
        loc = self.metadata / "localization.txt"
        if not loc.is_file():
            raise FileNotFoundError(f"metadata file not found: {loc}")
        first = next((line for line in read_text(loc).splitlines() if line.strip()), "")
        if first.count(",") == 2:  # image_id,mask_path,ignore_path
            self.mask_paths, self.ignore_paths = md.read_mask_paths(loc)
            self._same_ids(self.mask_paths, loc)
        else:
            self.sizes = md.read_image_sizes(self.metadata / "image_sizes.txt")
            self._same_ids(self.sizes, self.metadata / "image_sizes.txt")
            self.boxes = md.read_localization(loc, self.sizes)
            self._same_ids(self.boxes, loc)
        self.has_boxes, self.has_masks = bool(self.boxes), bool(self.mask_paths)
        self.has_classes = self.predictions is not None
        if self.predictions is not None:
            labels = md.read_class_labels(self.metadata / "class_labels.txt")
            self._same_ids(labels, self.metadata / "class_labels.txt")
            predicted = md.read_class_labels(self.predictions)
            self._same_ids(predicted, Path(self.predictions))
            self.correct = {i: predicted[i] == labels[i] for i in self.image_ids}
        # Every map must have the first one's shape (GT boxes and masks are mapped onto it).
        if self.image_ids:
            self.shape = self._read(0).shape

    def _read(self, index: int) -> np.ndarray:
        image_id = self.image_ids[index]
        path = self.scoremaps / f"{image_id}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"score map of {image_id!r} not found: {path}")
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError, OSError) as err:
            raise ValueError(f"score map of {image_id!r} could not be read: {path}: {err or 'empty file'}") from None

    def _same_ids(self, table: dict, path: Path) -> None:
        missing = [i for i in self.image_ids if i not in table]
        extra = [i for i in table if i not in set(self.image_ids)]
        if missing:
            raise ValueError(f"{path}: no entry for image {missing[0]!r} of image_ids.txt ({len(missing)} missing)")
        if extra:
            raise ValueError(f"{path}: image {extra[0]!r} is not in image_ids.txt ({len(extra)} unknown ids)")

    def load(self, index: int, boxes: bool = True, masks: bool = True) -> ImageInput:
        image_id = self.image_ids[index]
        path = self.scoremaps / f"{image_id}.npy"
        raw = np.asarray(self._read(index))
        if self.upsample is not None:  # maps of any size, each brought to S x S
            raw = upsample_raw_map(raw, self.upsample, image_id, str(path))
        elif raw.shape != self.shape:
            first = self.image_ids[0]
            raise ValueError(
                f"score map of {image_id!r} ({path}) has shape {raw.shape}, but {first!r} has {self.shape}"
            )
        scoremap, degenerate = prepare_loaded_scoremap(raw, image_id, str(path), self.normalization, self.percentile)
        item = ImageInput(image_id, scoremap, degenerate=degenerate, cls_correct=self.correct.get(image_id))
        height, width = scoremap.shape
        if boxes and self.has_boxes:
            item.boxes = resize_gt_boxes(np.asarray(self.boxes[image_id]), self.sizes[image_id], (width, height))
        if masks and self.has_masks:
            item.mask = self._mask(image_id, (width, height))
        return item

    def _mask(self, image_id: str, size: tuple[int, int]) -> np.ndarray:
        """Union of the instance masks (nearest-resized, ``> 0.5``), ignore = ignore box minus object."""
        foreground = np.zeros(size[::-1], bool)
        for rel in self.mask_paths[image_id]:
            foreground |= resize_nearest(_read_gray(self.mask_root / rel, image_id, "mask"), size) > 0
        mask = foreground.astype(np.uint8)
        ignore_rel = self.ignore_paths.get(image_id, "")
        if ignore_rel:  # no ignore file simply means no ignore region (the reference crashes, issue #33)
            ignore = resize_nearest(_read_gray(self.mask_root / ignore_rel, image_id, "ignore mask"), size) > 0
            mask[ignore & ~foreground] = 255
        return mask

    def describe(self) -> dict:
        return {"metadata": str(self.metadata), "scoremaps": str(self.scoremaps)}

    def gt_where(self, kind: str) -> str:
        return str(self.metadata / "localization.txt")


@dataclass
class NpzSource(Source):
    """One ``.npz`` with the keys of the reference cases: ``cams``, ``gt_boxes_flat`` + ``gt_box_counts``
    (boxes), optional ``image_sizes`` (then boxes are in original-image pixels), ``gt_masks`` and
    ``cls_correct``; image ids are the indices unless an ``image_ids`` array is present.

    ``normalization``, ``percentile`` and ``upsample`` are as in :class:`MetadataSource`: with a rule or an
    upsampling, ``cams`` holds raw maps.
    """

    path: Path
    normalization: str | None = None
    percentile: float = DEFAULT_PERCENTILE
    upsample: int | None = None
    image_ids: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.normalization = _check_upsample(self.upsample, self.normalization)
        if self.normalization is not None:
            check_normalization(self.normalization, self.percentile)
        # One handle for the whole run (npz.py): every array below, and every map later, comes from this file.
        self._archive = archive = NpzArchive(self.path)
        self.path = archive.path
        keys = set(archive.keys)
        if "cams" not in keys:
            raise KeyError(f"{self.path}: no 'cams' array (keys: {sorted(keys)})")
        # The maps (and masks) are read one by one when stored uncompressed (their sizes checked against the
        # stored bytes before anything grows with them); the rest is small and loaded whole.
        self._data = {}
        for key in archive.keys:
            stored = archive.stored(key) if key in ("cams", "gt_masks") else None
            self._data[key] = stored if stored is not None else archive.load(key)
        data = self._data
        cams = data["cams"]
        if cams.ndim != 3:
            raise ValueError(f"{self.path}: 'cams' must be (N, H, W), got shape {cams.shape}")
        n = len(cams)
        self.has_boxes = "gt_boxes_flat" in keys and "gt_box_counts" in keys
        self.has_masks = "gt_masks" in keys
        self.has_classes = "cls_correct" in keys
        for key, shape in (
            ("gt_box_counts", (n,)),
            ("image_sizes", (n, 2)),
            ("cls_correct", (n,)),
            ("image_ids", (n,)),
        ):
            if key in keys and data[key].shape != shape:
                what = f"has {data[key].shape[0] if data[key].ndim else 0} entries for {n} maps"
                what = what if key == "image_ids" else f"must have shape {shape}, got {data[key].shape}"
                raise ValueError(f"{self.path}: '{key}' {what}")
        self.image_ids = [str(i) for i in data["image_ids"]] if "image_ids" in keys else [str(i) for i in range(n)]
        if len(set(self.image_ids)) != n:
            seen: set[str] = set()
            duplicate = next(i for i in self.image_ids if i in seen or seen.add(i))
            raise ValueError(f"{self.path}: 'image_ids' repeats {duplicate!r}")
        if self.has_boxes:
            counts = data["gt_box_counts"]
            if counts.dtype.kind not in "iu" or (counts < 0).any():
                raise ValueError(f"{self.path}: 'gt_box_counts' must hold non-negative integers")
            if counts.sum() != len(data["gt_boxes_flat"]):
                raise ValueError(
                    f"{self.path}: gt_box_counts sums to {counts.sum()} but there are "
                    f"{len(data['gt_boxes_flat'])} rows in gt_boxes_flat"
                )
            self._starts = np.concatenate([[0], np.cumsum(counts)])
            if self.upsample is not None and "image_sizes" not in keys and cams.shape[1:] != (self.upsample,) * 2:
                raise ValueError(
                    f"{self.path}: --upsample {self.upsample} needs 'image_sizes' (the boxes' image sizes) to map "
                    f"the boxes onto {self.upsample}x{self.upsample} maps; without it they are in the "
                    f"{cams.shape[2]}x{cams.shape[1]} maps' pixels"
                )
        expected = cams.shape if self.upsample is None else (n, self.upsample, self.upsample)
        if self.has_masks and data["gt_masks"].shape != expected:
            raise ValueError(f"{self.path}: gt_masks {data['gt_masks'].shape} != score maps {expected}")

    def _arrays(self) -> dict[str, Any]:
        return self._data

    def load(self, index: int, boxes: bool = True, masks: bool = True) -> ImageInput:
        data = self._arrays()
        image_id = self.image_ids[index]
        where = f"{self.path}[cams][{index}]"
        raw = data["cams"][index]
        if self.upsample is not None:
            raw = upsample_raw_map(raw, self.upsample, image_id, where)
        scoremap, degenerate = prepare_loaded_scoremap(raw, image_id, where, self.normalization, self.percentile)
        correct = bool(data["cls_correct"][index]) if self.has_classes else None
        item = ImageInput(image_id, scoremap, degenerate=degenerate, cls_correct=correct)
        if boxes and self.has_boxes:
            rows = data["gt_boxes_flat"][self._starts[index] : self._starts[index + 1]]
            if "image_sizes" in data:
                height, width = scoremap.shape
                rows = resize_gt_boxes(rows, tuple(int(v) for v in data["image_sizes"][index]), (width, height))
            item.boxes = np.asarray(rows)
        if masks and self.has_masks:
            item.mask = data["gt_masks"][index]
        return item

    def describe(self) -> dict:
        return {"npz": str(self.path)}

    def gt_where(self, kind: str) -> str:
        return f"{self.path}[{'gt_boxes_flat' if kind == 'boxes' else 'gt_masks'}]"
