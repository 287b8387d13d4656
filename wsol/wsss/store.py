"""Files of a resumable run: atomic writes, stored maps, the settings manifest and output names."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from wsol.atomic import atomic_write

__all__ = [
    "atomic_write",
    "check_settings",
    "claim_masks",
    "file_digest",
    "image_stem",
    "load_npz",
    "relative_id",
    "save_npz",
]


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes: the identity of a checkpoint, whatever its name."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def relative_id(image_id: str) -> PurePosixPath:
    """An image id as a relative path inside an output folder.

    Raises:
        ValueError: for an absolute id or one that climbs out of the folder.
    """
    path = PurePosixPath(str(image_id).replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.name:
        raise ValueError(f"image id {image_id!r} cannot name a file inside the output folder")
    return path


def image_stem(image_id: str) -> str:
    """Relative output name of an image id, without extension (``train/00012.png`` -> ``train/00012``)."""
    return str(relative_id(image_id).with_suffix(""))


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as a compressed ``.npz``, atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(path, write)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _save_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write(out_dir / "run.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))


def check_settings(out_dir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Record the map settings in ``out_dir/run.json``, refusing a folder whose maps were made otherwise.

    Returns:
        The manifest (``cams``: map settings, ``masks``: label-map settings once PNGs are written).

    Raises:
        ValueError: if ``out_dir`` holds maps made with other settings.
    """
    path = out_dir / "run.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    if manifest.get("cams") not in (None, settings):
        raise ValueError(
            f"{out_dir} holds maps made with other settings ({manifest['cams']}, now {settings}); "
            "choose a new --out or delete the folder"
        )
    manifest["cams"] = settings
    _save_manifest(out_dir, manifest)
    return manifest


def claim_masks(out_dir: Path, manifest: dict[str, Any], settings: dict[str, Any]) -> None:
    """Record the label-map settings before writing PNGs; PNGs made with other settings are deleted first.

    Recording first means a run interrupted while writing PNGs resumes without rewriting the finished ones.
    """
    if manifest.get("masks") == settings:
        return
    for stale in sorted((out_dir / "masks").rglob("*.png")):
        stale.unlink()
    manifest["masks"] = settings
    _save_manifest(out_dir, manifest)
