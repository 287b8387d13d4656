"""Trained study models kept for reuse, so that one recipe is never trained twice on the same draw and seed.

A PSOL-style row's stage 1 (``psol``, ``psol2``, ``psol_fused``) is, by construction, the run of its recipe: the
same seed, images, order and crops as the ``cam_hires16`` row (the runner's tests check that the maps are equal).
Without a store each of those rows trains that model again; with it, the first run that trains it writes its
weights under ``<out>/models/`` and every later one loads them.

A model is found again only under the same key: the full training recipe (its config hash), regime, seed, the
study's data description (dataset, split seed, split sizes), the batch cap and the accelerator. Only models that
learn from class labels alone are kept (``train_split`` ``"regime"`` or ``"labels"`` and no box supervision), so
a box-trained reference model can never stand in for a WSOL one. Weights are plain tensors, read back with
``torch.load(..., weights_only=True)``; both files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsol.atomic import atomic_write, write_text

__all__ = ["ModelStore", "label_only", "model_key"]

STORE_DIR = "models"


def label_only(config: Mapping[str, Any]) -> bool:
    """Whether a recipe learns from class labels alone: the models a store may hold."""
    split = config.get("train_split", "regime")
    return split in ("regime", "labels") and config.get("supervision", "labels") == "labels"


def model_key(
    config: Mapping[str, Any],
    regime: str,
    seed: int,
    data_description: Mapping[str, Any],
    limit_train_batches: int | float | None,
    accelerator: str,
) -> str:
    """A short hash of everything that decides a label-only model's weights.

    ``train_split`` is left out: ``"regime"`` and ``"labels"`` give the same images, order and crops, and a
    label-only model reads nothing else. Of the data description's per-regime entries (``regimes``, ``n_train``)
    only this regime's count in, so a study invoked with fewer regimes finds the same models.
    """
    from wsol.study.data import PER_REGIME_KEYS

    recipe = {k: v for k, v in config.items() if k != "train_split"}
    data = {k: v for k, v in data_description.items() if k not in PER_REGIME_KEYS}
    data |= {k: dict(data_description.get(k) or {}).get(regime) for k in PER_REGIME_KEYS}
    payload = {
        "recipe": recipe,
        "regime": regime,
        "seed": int(seed),
        "data": data,
        "limit_train_batches": limit_train_batches,
        "accelerator": accelerator,
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelStore:
    """The ``models/`` folder of a study's output.

    Attributes:
        root: The folder (``<out>/models``).
    """

    root: Path

    @classmethod
    def of(cls, out: str | Path) -> ModelStore:
        """The store of the study whose output folder is ``out``."""
        return cls(Path(out) / STORE_DIR)

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not key.isalnum():
            raise ValueError(f"model key must be alphanumeric, got {key!r}")
        return self.root / f"{key}.pt", self.root / f"{key}.json"

    def load(self, key: str, model: Any) -> dict[str, Any] | None:
        """Load the weights kept under ``key`` into ``model``; returns their record, or None when none are kept.

        Raises:
            ValueError: The files exist but do not fit ``model`` (another architecture under the same key).
        """
        import torch

        weights, record = self._paths(key)
        if not (weights.is_file() and record.is_file()):
            return None
        meta = json.loads(record.read_text())
        if meta.get("key") != key:
            raise ValueError(f"{record} records key {meta.get('key')!r}, expected {key!r}")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{weights} does not fit the model of its key {key}: {err}") from err
        return meta

    def save(self, key: str, model: Any, record: Mapping[str, Any]) -> Path:
        """Keep ``model``'s weights under ``key`` with ``record`` (who trained them and in how many seconds)."""
        import torch

        weights, meta = self._paths(key)
        state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
        atomic_write(weights, lambda tmp: torch.save(state, tmp))
        write_text(meta, json.dumps({**record, "key": key}, indent=1, sort_keys=True))
        return weights
