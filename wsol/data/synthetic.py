"""Built-in demo data: a deterministic, generated localization set with exact boxes and masks.

Each image holds one object on a cluttered, textured background. Classes differ in *shape and
texture* (never in colour, which is drawn at random for every instance), objects appear anywhere in
the image at varied scales (so a centred box does not solve the task), and the clutter — strokes and
blobs with their own textures — is drawn from the same distribution for every class, so only the
object tells the class. Boxes are the tight inclusive bounds of the object mask.

The set is generated on first use into a cache directory (``$WSOL_CACHE`` or ``~/.cache/wsol``) and
loaded from there afterwards; a few thousand 64 px images take a couple of seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from wsol.atomic import atomic_write
from wsol.data.datasets import ListDataset, register_reader
from wsol.data.schema import Sample

CLASS_NAMES = ("disc", "square", "triangle", "cross", "ellipse", "hexagon", "ring", "diamond")
_TEXTURES = ("hstripes", "checker", "dots", "vstripes", "diagonal", "grid", "rings", "waves")
_VERSION = 1  # bump when the generator changes, so stale caches are not reused


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the generated set (they also key its cache).

    Args:
        num_classes: object classes, 2 to 8.
        train_per_class: training images per class.
        val_per_class: validation images per class.
        image_size: side of the square images in pixels.
        min_scale: smallest object extent as a fraction of the image side.
        max_scale: largest object extent as a fraction of the image side.
        clutter: number of background distractor strokes/blobs per image.
        seed: generator seed; the same config always yields the same images.
    """

    num_classes: int = 5
    train_per_class: int = 300
    val_per_class: int = 50
    image_size: int = 64
    min_scale: float = 0.3
    max_scale: float = 0.6
    clutter: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= len(CLASS_NAMES):
            raise ValueError(f"num_classes must be in [2, {len(CLASS_NAMES)}], got {self.num_classes}")
        if self.image_size < 24:
            raise ValueError(f"image_size must be >= 24, got {self.image_size}")
        if not 0.05 <= self.min_scale <= self.max_scale <= 0.95:
            raise ValueError(f"need 0.05 <= min_scale <= max_scale <= 0.95, got {self.min_scale}, {self.max_scale}")

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "version": _VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _texture(kind: str, size: int, period: float, phase: float, rng: np.random.Generator) -> np.ndarray:
    """A binary-ish texture in [0, 1] of shape (size, size)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    w = 2 * np.pi / period
    if kind == "hstripes":
        t = np.sin(w * yy + phase)
    elif kind == "vstripes":
        t = np.sin(w * xx + phase)
    elif kind == "diagonal":
        t = np.sin(w * (xx + yy) / np.sqrt(2) + phase)
    elif kind == "checker":
        t = np.sin(w * xx + phase) * np.sin(w * yy + phase)
    elif kind == "grid":
        t = np.maximum(np.cos(w * xx + phase), np.cos(w * yy + phase)) - 0.6
    elif kind == "dots":
        t = np.cos(w * xx + phase) + np.cos(w * yy + phase) - 1.0
    elif kind == "rings":
        cx, cy = rng.uniform(0, size, 2)
        t = np.sin(w * np.hypot(xx - cx, yy - cy) + phase)
    elif kind == "waves":
        t = np.sin(w * yy + 2.0 * np.sin(w * xx / 2 + phase))
    else:  # pragma: no cover - internal table
        raise ValueError(kind)
    return (t > 0).astype(np.float32)


def _shape_mask(kind: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Filled shape of radius ``r`` centred at (cx, cy) as a uint8 mask."""
    mask = np.zeros((size, size), np.uint8)
    s = 16  # draw with sub-pixel precision
    c = (int(round(cx * s)), int(round(cy * s)))

    def poly(n: int, start: float, radii: tuple[float, ...] = (1.0,)) -> None:
        pts = []
        for i in range(n * len(radii)):
            a = start + angle + 2 * np.pi * i / (n * len(radii))
            rr = r * radii[i % len(radii)]
            pts.append((cx + rr * np.cos(a), cy + rr * np.sin(a)))
        cv2.fillPoly(mask, [np.round(np.array(pts) * s).astype(np.int32)], 1, cv2.LINE_8, shift=4)

    if kind == "disc":
        cv2.circle(mask, c, int(r * s), 1, -1, cv2.LINE_8, shift=4)
    elif kind == "ring":
        cv2.circle(mask, c, int(r * s), 1, -1, cv2.LINE_8, shift=4)
        cv2.circle(mask, c, int(0.5 * r * s), 0, -1, cv2.LINE_8, shift=4)
    elif kind == "ellipse":
        axes = (int(r * s), int(0.55 * r * s))
        cv2.ellipse(mask, c, axes, np.degrees(angle), 0, 360, 1, -1, cv2.LINE_8, shift=4)
    elif kind == "square":
        poly(4, np.pi / 4)
    elif kind == "diamond":
        poly(4, 0.0, (1.0, 0.6))
    elif kind == "triangle":
        poly(3, -np.pi / 2)
    elif kind == "hexagon":
        poly(6, 0.0)
    elif kind == "cross":
        poly(4, np.pi / 4, (1.0, 0.42, 0.42))
    else:  # pragma: no cover - internal table
        raise ValueError(kind)
    return mask


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def _background(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    size = cfg.image_size
    # Low-frequency colour field plus pixel noise.
    coarse = rng.uniform(40, 215, (4, 4, 3)).astype(np.float32)
    img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 12, img.shape).astype(np.float32)
    for _ in range(cfg.clutter):
        # Distractors carry textures too, so texture alone never gives the object away.
        layer = np.zeros((size, size), np.uint8)
        if rng.random() < 0.5:
            p0, p1 = rng.integers(0, size, 2), rng.integers(0, size, 2)
            cv2.line(layer, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1, int(rng.integers(2, 5)))
        else:
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            axes = (int(rng.integers(2, size // 8 + 3)), int(rng.integers(2, size // 8 + 3)))
            cv2.ellipse(layer, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        tex = _texture(str(rng.choice(_TEXTURES)), size, rng.uniform(3, 7), rng.uniform(0, 6.3), rng)
        ink = _random_colour(rng) * (0.6 + 0.4 * tex[..., None])
        img = np.where(layer[..., None] > 0, ink, img)
    return img


def _draw(cfg: SyntheticConfig, label: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = cfg.image_size
    img = _background(cfg, rng)
    extent = rng.uniform(cfg.min_scale, cfg.max_scale) * size
    r = extent / 2
    cx, cy = rng.uniform(r, size - r, 2)
    mask = _shape_mask(CLASS_NAMES[label], size, cx, cy, r, rng.uniform(0, 2 * np.pi))
    tex = _texture(_TEXTURES[label], size, rng.uniform(3.5, 6.0), rng.uniform(0, 6.3), rng)
    fg, bg = _random_colour(rng), _random_colour(rng)
    while np.abs(fg - bg).sum() < 150:  # keep the texture visible
        bg = _random_colour(rng)
    obj = fg * tex[..., None] + bg * (1 - tex[..., None])
    img = np.where(mask[..., None] > 0, obj, img)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    return img, mask


def generate(cfg: SyntheticConfig) -> dict[str, np.ndarray]:
    """Generate the whole set in memory.

    Returns:
        A dict with ``images`` (N, S, S, 3) uint8, ``masks`` (N, S, S) uint8 (0/1), ``labels`` (N,),
        ``boxes`` (N, 4) inclusive x0, y0, x1, y1 and ``is_train`` (N,) bool.
    """
    rng = np.random.default_rng(cfg.seed)
    per_split = ((True, cfg.train_per_class), (False, cfg.val_per_class))
    images, masks, labels, boxes, is_train = [], [], [], [], []
    for train, per_class in per_split:
        for i in range(per_class * cfg.num_classes):
            label = i % cfg.num_classes
            img, mask = _draw(cfg, label, rng)
            ys, xs = np.nonzero(mask)
            images.append(img)
            masks.append(mask)
            labels.append(label)
            boxes.append((xs.min(), ys.min(), xs.max(), ys.max()))
            is_train.append(train)
    return {
        "images": np.stack(images),
        "masks": np.stack(masks),
        "labels": np.asarray(labels, np.int64),
        "boxes": np.asarray(boxes, np.int64),
        "is_train": np.asarray(is_train, bool),
    }


def cache_dir() -> Path:
    """Where generated data is kept: ``$WSOL_CACHE`` or ``~/.cache/wsol``."""
    return Path(os.environ.get("WSOL_CACHE", Path.home() / ".cache" / "wsol"))


def load_or_generate(cfg: SyntheticConfig, root: str | Path | None = None) -> dict[str, np.ndarray]:
    """Load the set for ``cfg`` from the cache, generating and saving it on first use."""
    path = Path(root or cache_dir()) / "synthetic" / f"{cfg.key()}.npz"
    if path.is_file():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    data = generate(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    # atomic, through a temporary file of its own: a concurrent or interrupted run never sees half a file
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, **data))
    return data


def synthetic_samples(data: dict[str, np.ndarray], split: str) -> list[Sample]:
    """The ``train`` or ``val`` split of a generated set as samples (masks use 0 / label + 1)."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    keep = np.flatnonzero(data["is_train"] == (split == "train"))
    samples = []
    for i in keep:
        label = int(data["labels"][i])
        samples.append(
            Sample(
                image=data["images"][i],
                labels=(label,),
                boxes=data["boxes"][i][None].astype(np.float32),
                image_id=f"{split}/{i:05d}.png",
                mask=(data["masks"][i] * (label + 1)).astype(np.uint8),
            )
        )
    return samples


@register_reader("synthetic")
def read_synthetic(root: str | Path | None, split: str, **options: int | float) -> ListDataset:
    """The built-in demo set; ``root`` overrides the cache directory, ``options`` set :class:`SyntheticConfig`."""
    cfg = SyntheticConfig(**options)
    data = load_or_generate(cfg, root)
    return ListDataset(synthetic_samples(data, split), CLASS_NAMES[: cfg.num_classes])
