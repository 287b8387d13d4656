"""``wsol predict``: a model's score maps written in the reference benchmark's layout, for ``wsol evaluate``.

:class:`ReferenceLayoutWriter` receives :meth:`wsol.methods.WSOLModule.predict_step`'s batches and writes
``OUT/scoremaps/<image_id>.npy`` (float64, the protocol's maps at the input size), ``OUT/metadata/`` (ids, labels,
sizes and boxes in the input's pixels, ``class_names.txt`` beside it) and ``OUT/predictions.txt`` (top-1
classes, for Top-1 Loc). Under DDP every rank writes its own maps and rank 0 gathers the metadata. Score with
``wsol evaluate --metadata OUT/metadata --scoremaps OUT/scoremaps --predictions OUT/predictions.txt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pytorch_lightning.callbacks import BasePredictionWriter

from wsol.atomic import write_text
from wsol.data.wsoleval_metadata import MetadataRecord, write_metadata
from wsol.wsss.store import relative_id

__all__ = ["ReferenceLayoutWriter"]


class ReferenceLayoutWriter(BasePredictionWriter):
    """Write predicted score maps and their metadata in the reference layout under ``out``.

    Args:
        out: the output folder.
        class_names: names of the classes (default: the datamodule's, else their indices).
    """

    def __init__(self, out: str | Path, class_names: list[str] | None = None) -> None:
        super().__init__(write_interval="batch")
        self.out, self.class_names = Path(out), class_names
        self.records: list[tuple[MetadataRecord, int]] = []

    def on_predict_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.records = []

    def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Any, batch_indices: Any, batch: Any,
                           batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        maps = prediction["scoremaps"].numpy().astype(np.float64)
        height, width = prediction["size"]
        for i, image_id in enumerate(prediction["image_id"]):
            path = self.out / "scoremaps" / f"{relative_id(image_id)}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, maps[i])
            boxes = prediction["boxes"][i].numpy().tolist()
            record = MetadataRecord(image_id, int(prediction["label"][i]), (int(width), int(height)), boxes)
            self.records.append((record, int(prediction["predicted"][i])))

    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        records = self.records
        if trainer.world_size > 1:  # every rank's images, once, on rank 0
            import torch.distributed as dist

            gathered: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(gathered, records)
            records = [r for part in gathered for r in part]
        if trainer.global_rank != 0:
            return
        if not records:
            raise ValueError("the prediction loader yielded no images")
        names = self.class_names or list(getattr(trainer.datamodule, "class_names", None) or [])
        write_metadata(self.out / "metadata", [r for r, _ in records], class_names=names or None)
        write_text(self.out / "predictions.txt", "".join(f"{r.image_id},{p}\n" for r, p in records))
