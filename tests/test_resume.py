"""Exact resume: a ``wsol train`` killed with SIGKILL and rerun with ``--ckpt_path last`` ends where an
uninterrupted run ends, because the data order, the augmentation and the training draws are functions of
(seed, epoch, step) and the checkpoint and log folders do not move between starts."""

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from wsol.augment import CutMix
from wsol.data.batching import collate
from wsol.data.datasets import ListDataset
from wsol.data.sampling import EpochSampler, SeededSamples
from wsol.data.schema import Sample
from wsol.data.transforms import TrainTransform
from wsol.methods import HaS
from wsol.seeding import derive_seed
from wsol.training.lightning_cli import WSOLCLI, train
from wsol.training.resumable_csv import ResumableCSVLogger

DEMO = {"num_classes": 3, "train_per_class": 4, "val_per_class": 2, "image_size": 32, "clutter": 2}


def _config(path: Path) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "precision": "32-true", "max_epochs": 3,
                    "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
                    "check_val_every_n_epoch": 2, "log_every_n_steps": 1},
        "model": {"class_path": "wsol.methods.CAM", "init_args": {
            "backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 8}, "lr": 0.1,
            "mixer": {"class_path": "wsol.augment.CutMix", "init_args": {"alpha": 1.0}}}},
        "data": {"class_path": "wsol.data.WSOLDataModule", "init_args": {
            "dataset": "synthetic", "image_size": 32, "batch_size": 4, "train_options": DEMO, "val_options": DEMO}},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def _losses(root: Path) -> list[tuple[str, str, str]]:
    with open(root / "lightning_logs" / "version_0" / "metrics.csv", newline="") as file:
        return [(r["epoch"], r["step"], r["train/loss"]) for r in csv.DictReader(file) if r["train/loss"]]


@pytest.mark.slow
def test_killed_run_resumed_from_last_ends_with_the_uninterrupted_weights(tmp_path):
    config = _config(tmp_path / "config.yaml")
    run = tmp_path / "run"
    command = [sys.executable, "-m", "wsol.cli", "train", "--config", str(config),
               "--trainer.default_root_dir", str(run), "--ckpt_path", "last"]  # fmt: skip
    # The same intra-op thread count as this process, whose run is the reference: sums must split alike.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    last = run / "checkpoints" / "last.ckpt"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

        def kill_after_the_first_checkpoint() -> None:
            while not last.exists() and first.poll() is None:
                time.sleep(0.01)
            first.send_signal(signal.SIGKILL)

        killer = threading.Thread(target=kill_after_the_first_checkpoint)
        killer.start()
        # The uninterrupted run, meanwhile, in this process.
        reference = train(["--config", str(config), "--trainer.default_root_dir", str(tmp_path / "ref")])
        killer.join()
        first.wait(timeout=120)
    first_log = (tmp_path / "first.log").read_text()
    assert first.returncode == -signal.SIGKILL, first_log
    assert "--ckpt_path last: no last.ckpt in" in first_log and "starting from scratch" in first_log
    assert "Traceback" not in first_log
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert killed_at < 2  # the kill came before the end: the resumed run has epochs left to train

    resumed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {last}" in resumed.stderr
    assert reference.trainer.global_step == 9

    expected, got = _state(tmp_path / "ref" / "checkpoints" / "last.ckpt"), _state(last)
    assert expected.keys() == got.keys()
    differing = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not differing, f"{len(differing)} of {len(expected)} tensors differ, e.g. {differing[:3]}"
    # One log folder across both starts, holding every step once, with the uninterrupted run's losses.
    assert _losses(run) == _losses(tmp_path / "ref")
    assert sorted(p.name for p in (run / "lightning_logs").iterdir()) == ["version_0"]


def _sample(size: int = 24) -> Sample:
    # Channel 0 encodes the column and channel 1 the row, so an output image tells where it was cropped from.
    ys, xs = np.mgrid[0:size, 0:size]
    image = np.stack([xs * 10, ys * 10, np.zeros_like(xs)], axis=-1).astype(np.uint8)
    return Sample(image=image, labels=(1,), boxes=np.array([[2, 3, 15, 20]], dtype=np.float32), image_id="a")


def test_sampler_order_is_a_function_of_seed_and_epoch_only():
    walked = EpochSampler(10, seed=3)
    orders = []
    for epoch in range(3):
        walked.set_epoch(epoch)
        orders.append(list(walked))
    jumped = EpochSampler(10, seed=3)
    jumped.set_epoch(2)  # straight to epoch 2, nothing drawn before: a resumed run
    assert list(jumped) == orders[2] and list(jumped) == orders[2]  # iterating again changes nothing
    assert [e for e, _ in orders[2]] == [2] * 10 and sorted(i for _, i in orders[2]) == list(range(10))
    assert orders[0] != orders[1] != orders[2]
    assert [i for _, i in EpochSampler(10, seed=4, epoch=2)] != [i for _, i in orders[2]]
    assert EpochSampler(10, seed=3, epoch=1).order(1) == [i for _, i in orders[1]]
    with pytest.raises(ValueError, match="epoch"):
        walked.set_epoch(-1)


def test_augmentation_is_a_function_of_seed_epoch_and_index_only():
    data = ListDataset([_sample(), _sample()], ["a", "b"])
    data.transform = TrainTransform(16, 2, scale=(0.2, 1.0), seed=0)
    items = SeededSamples(data, seed=5)
    first = items[(1, 0)]["image"]
    for key in [(0, 0), (0, 1), (2, 0), (1, 1)]:  # other draws in between do not shift sample 0 of epoch 1
        items[key]
    assert torch.equal(items[(1, 0)]["image"], first)
    assert torch.equal(SeededSamples(data, seed=5)[(1, 0)]["image"], first)  # a fresh copy, as in a worker
    assert not torch.equal(items[(2, 0)]["image"], first)
    assert not torch.equal(SeededSamples(data, seed=6)[(1, 0)]["image"], first)
    assert items.sample_seed(1, 0) == derive_seed(1, 5, 1, 0)  # (AUGMENT, seed, epoch, index)
    assert torch.equal(items[1]["image"], items[(0, 1)]["image"])  # a stock sampler's plain index: epoch 0
    # Loader workers see the same crops as the main process.
    serial = list(DataLoader(items, batch_size=2, sampler=EpochSampler(2, epoch=1), collate_fn=collate))
    parallel = DataLoader(items, batch_size=1, sampler=EpochSampler(2, epoch=1), collate_fn=collate, num_workers=2)
    assert torch.equal(torch.cat([b["image"] for b in parallel]), serial[0]["image"])


def test_one_seed_gives_one_shared_stream_to_crop_and_flip():
    # Compose.set_random_seed would give the crop and the flip two copies of one stream, so the flip's draw would
    # repeat the crop's first one (its area): the flip would then be decided by the crop's size.
    transform = TrainTransform(16, 2, scale=(0.2, 1.0))
    areas, flipped = [], []
    for seed in range(80):
        image = transform(_sample(), seed=seed)["image"]
        areas.append(float(np.ptp(image[0].numpy()) * np.ptp(image[1].numpy())))
        flipped.append(bool(image[0, 0, 0] > image[0, 0, -1]))
    large = np.array(areas) > np.quantile(areas, 0.75)
    assert 0 < np.sum(large & np.array(flipped)) < np.sum(large)


def test_mixer_and_hiding_draws_follow_epoch_and_batch_not_history():
    images, targets = torch.rand(4, 3, 8, 8), torch.eye(4)
    mixer = CutMix(seed=1)
    mixer.seed_step(2, 5)
    expected = mixer(images, targets).images
    for _ in range(3):
        mixer(images, targets)
    mixer.seed_step(2, 5)
    assert torch.equal(mixer(images, targets).images, expected)
    fresh = CutMix(seed=1)
    fresh.seed_step(2, 5)
    assert torch.equal(fresh(images, targets).images, expected)
    fresh.seed_step(2, 6)
    assert not torch.equal(fresh(images, targets).images, expected)

    model = HaS(backbone="resnet10", backbone_kwargs={"stem_stride": 2, "width": 8}, num_classes=3, seed=7)
    model.seed_step(0, 3)
    hidden = model.hide(torch.ones(2, 3, 16, 16))
    model.hide(torch.ones(2, 3, 16, 16))
    model.seed_step(0, 3)
    assert torch.equal(model.hide(torch.ones(2, 3, 16, 16)), hidden)


def test_seed_step_reseeds_the_global_rng_only_under_seed_everything(monkeypatch):
    model = HaS(backbone="resnet10", backbone_kwargs={"stem_stride": 2, "width": 8}, num_classes=3)
    monkeypatch.setenv("PL_GLOBAL_SEED", "11")
    model.seed_step(1, 2)
    drawn = torch.rand(3)
    model.seed_step(1, 2)
    assert torch.equal(torch.rand(3), drawn)
    torch.manual_seed(derive_seed(4, 11, 1, 2))  # (TORCH, seed, epoch, batch)
    assert torch.equal(torch.rand(3), drawn)
    monkeypatch.delenv("PL_GLOBAL_SEED")
    torch.manual_seed(0)
    model.seed_step(1, 2)
    torch.manual_seed(0)
    assert not torch.equal(torch.rand(3), drawn)


def test_cli_fixes_the_checkpoint_and_log_folders(tmp_path):
    config = _config(tmp_path / "config.yaml")
    root = tmp_path / "run"
    cli = WSOLCLI(["--config", str(config), "--trainer.default_root_dir", str(root)])
    (checkpoint,) = cli.trainer.checkpoint_callbacks
    assert checkpoint.dirpath == str(root / "checkpoints") and checkpoint.save_last is True
    assert isinstance(cli.trainer.logger, ResumableCSVLogger) and not cli.trainer.logger.resume
    assert cli.trainer.logger.log_dir == str(root / "lightning_logs" / "version_0")
    resumed = WSOLCLI(["--config", str(config), "--trainer.default_root_dir", str(root), "--ckpt_path", "last"])
    assert resumed.trainer.logger.resume and resumed.trainer.logger.log_dir == cli.trainer.logger.log_dir
    # A ModelCheckpoint of the config is the config's business; logger: false stays off.
    own = '[{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", "init_args": {"dirpath": "elsewhere"}}]'
    mine = WSOLCLI(["--config", str(config), "--trainer.callbacks", own, "--trainer.logger", "false"])
    (checkpoint,) = mine.trainer.checkpoint_callbacks
    assert isinstance(checkpoint, ModelCheckpoint) and checkpoint.dirpath.endswith("elsewhere")
    assert not checkpoint.save_last and mine.trainer.logger is None


def test_resumed_csv_log_keeps_earlier_epochs_and_drops_the_replayed_ones(tmp_path):
    first = ResumableCSVLogger(tmp_path, version=0)
    for epoch, step in [(0, 0), (0, 1), (1, 2), (1, 3)]:  # killed in epoch 1, after epoch 0's checkpoint
        first.log_metrics({"loss": float(step), "epoch": epoch}, step=step)
    first.save()
    resumed = ResumableCSVLogger(tmp_path, version=0, resume=True)
    resumed.log_metrics({"loss": 20.0, "acc": 0.5, "epoch": 1}, step=2)
    resumed.save()
    with open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv", newline="") as file:
        rows = [(r["epoch"], r["step"], r["loss"], r["acc"]) for r in csv.DictReader(file)]
    assert rows == [("0", "0", "0.0", ""), ("0", "1", "1.0", ""), ("1", "2", "20.0", "0.5")]
