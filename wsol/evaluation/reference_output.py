"""The one writer of the reference layout: score maps, metadata, top-1 classes and a manifest under ``OUT``.

``wsol cams`` and ``wsol predict`` both write ``OUT/scoremaps/<image_id>.npy``, ``OUT/metadata/`` (ids, labels,
sizes, boxes or mask paths; ``OUT/class_names.txt`` beside it), ``OUT/predictions.txt`` and the manifest
``OUT/cams.json`` through :class:`ReferenceOutput`, which

- refuses an ``OUT`` that already holds such outputs (their maps would mix with the new ones) unless told to
  overwrite, and then deletes only those outputs;
- writes the manifest with ``"status": "running"`` before the first map and completes it after everything else,
  so a run that was killed is recognisable: ``wsol evaluate`` refuses its maps (``MetadataSource``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsol.atomic import write_text
from wsol.data.wsoleval_metadata import MetadataRecord, write_metadata

__all__ = ["MANIFEST", "ReferenceOutput", "is_unfinished"]

MANIFEST = "cams.json"
OUTPUTS = ("scoremaps", "metadata", MANIFEST, "predictions.txt")


def is_unfinished(out: str | Path) -> bool:
    """Whether ``out`` holds the manifest of a run that started writing and never completed."""
    manifest = Path(out) / MANIFEST
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("status") != "complete"
    except (ValueError, UnicodeDecodeError, AttributeError):
        return True  # half-written or foreign: not a completed run


class ReferenceOutput:
    """Writes one run's outputs in the reference layout under ``out``.

    Args:
        out: The output folder.
        command: What writes it (``"wsol cams"``, ``"wsol predict"``), for the manifest and messages.
    """

    def __init__(self, out: str | Path, command: str) -> None:
        self.out, self.command = Path(out), command
        self.scoremaps = self.out / "scoremaps"

    def found(self) -> list[str]:
        """The outputs of an earlier run already in ``out``."""
        return [name for name in OUTPUTS if (self.out / name).exists() or (self.out / name).is_symlink()]

    def check_free(self, overwrite: bool) -> None:
        """Raise when ``out`` holds an earlier run's outputs and ``overwrite`` is False (nothing is touched).

        Raises:
            ValueError: naming the folder and what it holds.
        """
        found = self.found()
        if found and not overwrite:
            raise ValueError(
                f"{self.out} already holds the outputs of a run ({', '.join(found)}); pass --overwrite to replace "
                "them or choose a new --out"
            )

    def claim(self, overwrite: bool, manifest: dict[str, Any]) -> None:
        """Refuse or clear an earlier run's outputs (only those), then write the ``running`` manifest.

        Raises:
            ValueError: ``out`` holds an earlier run's outputs and ``overwrite`` is False.
        """
        self.check_free(overwrite)
        for name in self.found():
            target = self.out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        self.write_manifest({"status": "running", "command": self.command, **manifest})

    def write_manifest(self, manifest: dict[str, Any]) -> Path:
        """Write ``OUT/cams.json`` atomically."""
        return write_text(self.out / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")

    def map_path(self, image_id: str) -> Path:
        """``OUT/scoremaps/<image_id>.npy``; an id that would climb out of the folder is refused."""
        from wsol.wsss.store import relative_id

        try:
            return self.scoremaps / f"{relative_id(image_id)}.npy"
        except ValueError:
            raise ValueError(f"image id {image_id!r} cannot name a file inside {self.scoremaps}") from None

    def save_map(self, image_id: str, scoremap: np.ndarray) -> Path:
        """Save one score map (as given: the caller picks the dtype)."""
        path = self.map_path(image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, scoremap)
        return path

    def finish(
        self,
        records: Sequence[MetadataRecord],
        predicted: Sequence[int],
        class_names: Sequence[str] | None,
        manifest: dict[str, Any],
    ) -> None:
        """Write the metadata and ``predictions.txt``, then complete the manifest (last).

        Raises:
            ValueError: no image was written.
        """
        if not records:
            raise ValueError(f"{self.command}: the data yielded no images")
        write_metadata(self.out / "metadata", records, class_names=list(class_names) if class_names else None)
        write_text(
            self.out / "predictions.txt",
            "".join(f"{r.image_id},{p}\n" for r, p in zip(records, predicted, strict=True)),
        )
        self.write_manifest({"status": "complete", "command": self.command, **manifest})
