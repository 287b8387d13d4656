"""Shared fixtures: a private cache for generated data, tiny demo datamodules, the real-data folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY_DEMO = {"train_per_class": 8, "val_per_class": 4, "image_size": 32, "num_classes": 3, "clutter": 2}


def shared_data_root() -> Path:
    """``$WSOL_DATA`` or the ``shared/data`` folder beside the repository."""
    return Path(os.environ.get("WSOL_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Generated demo data goes to a per-session folder, never the user's cache.
    os.environ["WSOL_CACHE"] = str(tmp_path_factory.mktemp("wsol-cache"))
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_datamodule():
    """A demo datamodule of 24 training and 12 validation 32 px images over 3 classes."""
    from wsol.data import WSOLDataModule

    return WSOLDataModule("synthetic", image_size=32, batch_size=4, train_options=TINY_DEMO, val_options=TINY_DEMO)


@pytest.fixture
def tiny_imagenet_root() -> Path:
    root = shared_data_root() / "tiny_imagenet_10"
    if not (root / "wnids.txt").is_file():
        pytest.skip(f"real data absent: {root} (set WSOL_DATA to the folder holding tiny_imagenet_10/)")
    return root


@pytest.fixture
def coco_mini_root() -> Path:
    root = shared_data_root() / "coco_mini"
    if not (root / "annotations").is_dir():
        pytest.skip(f"real data absent: {root} (set WSOL_DATA to the folder holding coco_mini/)")
    return root


def one_step_trainer(root: Path, val_batches: int = 0, checkpoint_dir: Path | None = None) -> Any:
    """A quiet CPU Trainer for one training batch (and ``val_batches`` validation batches); with ``checkpoint_dir``
    it keeps ``last.ckpt`` there, else it writes no checkpoint."""
    from pytorch_lightning.callbacks import ModelCheckpoint
    from quiet import quiet_trainer

    return quiet_trainer(
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=val_batches,
        enable_checkpointing=checkpoint_dir is not None,
        default_root_dir=root,
        callbacks=[ModelCheckpoint(dirpath=checkpoint_dir, save_last=True)] if checkpoint_dir is not None else None,
    )


def save_lightning_checkpoint(path: Path, model: Any, state: dict | None = None, hparams: dict | None = None) -> Path:
    """A checkpoint as Lightning and ``WSOLModule.on_save_checkpoint`` write it, without a Trainer: ``model``'s
    state dict (or ``state``), hyper-parameters (or ``hparams``) and recorded class."""
    import pytorch_lightning as pl

    torch.save(
        {
            "state_dict": model.state_dict() if state is None else state,
            "hyper_parameters": dict(model.hparams) if hparams is None else hparams,
            "pytorch-lightning_version": pl.__version__,
            "wsol_method": f"{type(model).__module__}.{type(model).__qualname__}",
        },
        path,
    )
    return path


def fit_one_step_and_reload(model: Any, datamodule: Any, root: Path) -> Any:
    """Train ``model`` on one batch of ``datamodule`` (asserting a finite loss and that some weight moved) and return
    the module reloaded from the ``last.ckpt`` it kept; ``model`` is left in eval mode beside it."""
    from wsol.methods import load_checkpoint

    before = [p.detach().clone() for p in model.parameters()]
    trainer = one_step_trainer(root, checkpoint_dir=root / "c")
    trainer.fit(model, datamodule=datamodule)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    restored = load_checkpoint(root / "c" / "last.ckpt")
    assert type(restored) is type(model) and not restored.training
    model.eval()
    return restored
