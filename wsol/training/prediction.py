"""``wsol predict``: a model's score maps written in the reference benchmark's layout, for ``wsol evaluate``.

:class:`ReferenceLayoutWriter` receives :meth:`wsol.methods.WSOLModule.predict_step`'s batches and writes them
through :class:`wsol.evaluation.reference_output.ReferenceOutput`, the writer ``wsol cams`` uses too:
``OUT/scoremaps/<image_id>.npy`` (float64, the protocol's maps at the input size), ``OUT/metadata/`` (ids, labels,
sizes and boxes in the input's pixels, ``class_names.txt`` beside it), ``OUT/predictions.txt`` (top-1 classes, for
Top-1 Loc) and the manifest ``OUT/cams.json``, written as ``running`` before the first map and completed last.
An ``OUT`` holding an earlier run's outputs is refused unless ``overwrite``. Under DDP rank 0 claims the folder,
every rank writes its own maps and rank 0 gathers the metadata. Score with
``wsol evaluate --metadata OUT/metadata --scoremaps OUT/scoremaps --predictions OUT/predictions.txt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pytorch_lightning.callbacks import BasePredictionWriter

from wsol.data.wsoleval_metadata import MetadataRecord
from wsol.evaluation.reference_output import ReferenceOutput

__all__ = ["ReferenceLayoutWriter"]


class ReferenceLayoutWriter(BasePredictionWriter):
    """Write predicted score maps and their metadata in the reference layout under ``out``.

    Args:
        out: the output folder.
        class_names: names of the classes (default: the datamodule's, else their indices).
        overwrite: replace the outputs of an earlier run in ``out`` (refused otherwise).
    """

    def __init__(self, out: str | Path, class_names: list[str] | None = None, overwrite: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.out, self.class_names, self.overwrite = Path(out), class_names, overwrite
        self.output = ReferenceOutput(self.out, "wsol predict")
        self.records: list[tuple[MetadataRecord, int]] = []

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        # Rank 0 claims the folder; every rank learns the outcome, so none writes into a refused folder or hangs.
        error = None
        if trainer.global_rank == 0:
            try:
                self.output.claim(self.overwrite, {"model": type(pl_module).__name__})
            except ValueError as err:
                error = str(err)
        error = trainer.strategy.broadcast(error, src=0)
        if error is not None:
            raise ValueError(error)

    def on_predict_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.records = []

    def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Any, batch_indices: Any, batch: Any,
                           batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        maps = prediction["scoremaps"].numpy().astype(np.float64)
        height, width = prediction["size"]
        for i, image_id in enumerate(prediction["image_id"]):
            self.output.save_map(image_id, maps[i])
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
        manifest = {"model": type(pl_module).__name__, "num_images": len(records)}
        self.output.finish([r for r, _ in records], [p for _, p in records], names or None, manifest)
