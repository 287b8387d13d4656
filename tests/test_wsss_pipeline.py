"""The pseudo-mask run end to end: demo-data mIoU, resuming, the CLI, and COCO mini."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from quiet import quiet_trainer

from wsol.cli import main
from wsol.commands.pseudo_masks import parse_scales, parse_sweep
from wsol.data import WSOLDataModule, read_dataset
from wsol.methods import CAM, SEAM, load_checkpoint
from wsol.wsss import PseudoMaskConfig, generate_pseudo_masks, load_label_png

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

DEMO = {"train_per_class": 32, "val_per_class": 4, "image_size": 48, "num_classes": 3, "clutter": 2}
TINY = {"backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 16, "last_stride": 1}}


@pytest.fixture(scope="module")
def one_thread():
    # Two busy-waiting OpenMP threads on two shared cores run many times slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def demo_checkpoint(tmp_path_factory, one_thread):
    """A ResNet-10 CAM trained for 60 steps on 96 demo images of 48 px; returns its checkpoint."""
    pl.seed_everything(0, verbose=False)
    dm = WSOLDataModule("synthetic", image_size=48, batch_size=16, train_options=DEMO, val_options=DEMO)
    model = CAM(**TINY, num_classes=3, lr=0.4, weight_decay=5e-4)
    trainer = quiet_trainer(max_epochs=10, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    path = tmp_path_factory.mktemp("ckpt") / "cam.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.mark.slow
def test_demo_pseudo_masks_beat_all_background(demo_checkpoint, tmp_path):
    model = load_checkpoint(demo_checkpoint)
    assert type(model) is CAM
    dataset = read_dataset("synthetic", None, "train", **DEMO)
    sweep = tuple(np.round(np.arange(0.0, 0.9, 0.05), 2))
    run = generate_pseudo_masks(model, dataset, tmp_path, PseudoMaskConfig(scales=(1.0, 1.5), sweep=sweep))
    assert run.num_images == 96 and run.computed == 96 and run.masks_written == 96
    scores, all_bg = run.scores, run.report["all_background"]["mIoU"]
    # All-background: background IoU = its pixel share (~87 %), classes 0 -> mIoU ~22 % over 4 classes.
    assert 15 < all_bg < 25
    assert scores["mIoU"] > all_bg + 15
    assert run.sweep["best_mIoU"] == pytest.approx(scores["mIoU"])
    assert run.bg_threshold == run.sweep["best_threshold"] and run.bg_threshold in sweep
    assert max(run.sweep["mIoU"]) == run.sweep["best_mIoU"] and min(run.sweep["mIoU"]) < scores["mIoU"] - 5
    assert set(scores["IoU"]) == {"background", "disc", "square", "triangle"}
    assert all(0 <= scores[k]["background"] <= 1 for k in ("IoU", "precision", "recall", "F1", "FPR"))
    # The PNGs are the masks that were scored: one per image at its size, values in {0, c + 1}.
    sample = dataset.load(5)
    png = load_label_png(tmp_path / "masks" / "train" / f"{5:05d}.png")
    assert png.shape == sample.mask.shape
    assert set(np.unique(png)) <= {0, sample.labels[0] + 1}
    coco = json.loads((tmp_path / "pseudo_masks.json").read_text())
    assert len(coco["images"]) == 96 and [c["name"] for c in coco["categories"]] == ["disc", "square", "triangle"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["bg_threshold"] == run.bg_threshold and metrics["scores"]["mIoU"] == pytest.approx(scores["mIoU"])
    for name in ("bg_sweep.png", "grid.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _Interrupting:
    """A dataset that fails on one index, as a run killed part-way would stop there."""

    def __init__(self, dataset, fail_at: int | None) -> None:
        self.dataset, self.fail_at, self.class_names = dataset, fail_at, dataset.class_names
        self.num_classes = dataset.num_classes

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, index: int):
        if index == self.fail_at:
            raise KeyboardInterrupt
        return self.dataset.load(index)


@pytest.mark.slow
def test_interrupted_run_resumes_without_rewriting(demo_checkpoint, tmp_path):
    model = load_checkpoint(demo_checkpoint)
    dataset = read_dataset("synthetic", None, "train", **DEMO)
    config = PseudoMaskConfig(scales=(1.0,), bg_threshold=0.4)
    with pytest.raises(KeyboardInterrupt):
        generate_pseudo_masks(model, _Interrupting(dataset, 7), tmp_path, config, limit=12, progress=False)
    done = sorted((tmp_path / "masks").rglob("*.png"))
    assert len(done) == 7 and len(list((tmp_path / "cams").rglob("*.npz"))) == 7
    stamps = {p: os.stat(p).st_mtime_ns for p in done}
    before = {p: p.read_bytes() for p in done}
    run = generate_pseudo_masks(model, dataset, tmp_path, config, limit=12, progress=False)
    assert (run.computed, run.reused, run.masks_written) == (5, 7, 5)
    assert all(os.stat(p).st_mtime_ns == stamps[p] and p.read_bytes() == before[p] for p in done)
    assert len(list((tmp_path / "masks").rglob("*.png"))) == 12
    # A fresh run in another folder gives byte-identical masks.
    fresh = generate_pseudo_masks(model, dataset, tmp_path / "fresh", config, limit=12, progress=False)
    assert fresh.computed == 12
    for png in (tmp_path / "masks").rglob("*.png"):
        assert png.read_bytes() == (tmp_path / "fresh" / png.relative_to(tmp_path)).read_bytes()
    # Another background threshold rewrites the PNGs from the stored maps; other CAM settings are refused.
    again = generate_pseudo_masks(model, dataset, tmp_path, PseudoMaskConfig(scales=(1.0,), bg_threshold=0.6), limit=12)
    assert (again.computed, again.masks_written) == (0, 12)
    with pytest.raises(ValueError, match="other settings"):
        generate_pseudo_masks(model, dataset, tmp_path, PseudoMaskConfig(scales=(1.0, 2.0)), limit=12)


def test_cli_writes_masks_and_reports_errors(demo_checkpoint, tmp_path, capsys):
    out = tmp_path / "pm"
    args = ["pseudo-masks", "--checkpoint", str(demo_checkpoint), "--data", "synthetic", "--out", str(out)]
    args += ["--data-options", json.dumps(DEMO), "--scales", "1", "--limit", "6", "--grid", "2", "--device", "cpu"]
    assert main(args + ["--ignore-threshold", "0.1"]) == 0
    printed = capsys.readouterr().out
    assert "6 images: maps computed for 6, reused 0; 6 PNGs written" in printed and "mIoU" in printed
    masks = [load_label_png(p) for p in sorted((out / "masks").rglob("*.png"))]
    assert len(masks) == 6 and all(m.shape == (48, 48) for m in masks)
    assert any((m == 255).any() for m in masks)  # the ignore band between 0.1 and 0.26
    # Same maps, no ignore band: the PNGs are rewritten from the stored maps, nothing recomputed.
    assert main(args) == 0
    assert "maps computed for 0, reused 6; 6 PNGs written" in capsys.readouterr().out
    assert not any((load_label_png(p) == 255).any() for p in (out / "masks").rglob("*.png"))
    assert main(args + ["--refine", "pcm"]) == 2
    assert "PCM refinement needs a SEAM model" in capsys.readouterr().err
    assert main(args[:-2] + ["--scales", "0,1"]) == 2
    assert "--scales" in capsys.readouterr().err


def test_stored_maps_are_keyed_on_checkpoint_content_and_data_options(demo_checkpoint, tmp_path, capsys):
    out = tmp_path / "pm"
    same_name = tmp_path / "other" / demo_checkpoint.name
    same_name.parent.mkdir()
    ckpt = torch.load(demo_checkpoint, weights_only=True)
    ckpt["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, same_name)
    base = ["pseudo-masks", "--data", "synthetic", "--out", str(out), "--scales", "1", "--limit", "2"]
    base += ["--grid", "0", "--device", "cpu", "--data-options", json.dumps(DEMO)]
    assert main(base + ["--checkpoint", str(demo_checkpoint)]) == 0
    capsys.readouterr()
    # Another checkpoint under the same file name must not reuse the stored maps.
    assert main(base + ["--checkpoint", str(same_name)]) == 2
    assert "holds maps made with other settings" in capsys.readouterr().err
    # Nor may other reader options.
    other = base[:-1] + [json.dumps({**DEMO, "clutter": 3})]
    assert main(other + ["--checkpoint", str(demo_checkpoint)]) == 2
    assert "holds maps made with other settings" in capsys.readouterr().err


def test_predicted_labels_choose_the_competing_class(demo_checkpoint, tmp_path):
    model = load_checkpoint(demo_checkpoint)
    dataset = read_dataset("synthetic", None, "train", **DEMO)
    config = PseudoMaskConfig(scales=(1.0,), labels="pred", bg_threshold=0.3)
    generate_pseudo_masks(model, dataset, tmp_path, config, limit=6, grid_images=0, progress=False)
    for i in range(6):
        stored = np.load(tmp_path / "cams" / "train" / f"{i:05d}.npz")
        top = int(stored["logits"].argmax())  # single-label model: the softmax top-1
        assert stored["classes"].tolist() == [top]
        assert set(np.unique(load_label_png(tmp_path / "masks" / "train" / f"{i:05d}.png"))) <= {0, top + 1}


def test_settings_are_checked_before_any_work():
    assert parse_scales("0.5, 1,2") == (0.5, 1.0, 2.0)
    sweep = parse_sweep("0:0.6:0.01")
    assert len(sweep) == 60 and sweep[0] == 0.0 and sweep[-1] == 0.59 and sweep[26] == 0.26
    assert parse_sweep("0.1:0.3:0.1") == (0.1, 0.2)
    for bad in ("0.5", "0:1", "1:0:0.1", "0:1:0"):
        with pytest.raises(ValueError, match="--sweep"):
            parse_sweep(bad)
    with pytest.raises(ValueError, match="--scales"):
        parse_scales("1,-2")
    with pytest.raises(ValueError, match="below the background threshold"):
        PseudoMaskConfig(bg_threshold=0.3, ignore_threshold=0.3)
    with pytest.raises(ValueError, match="every swept one"):
        PseudoMaskConfig(sweep=(0.0, 0.1), ignore_threshold=0.05)
    assert PseudoMaskConfig(sweep=(0.2, 0.3), ignore_threshold=0.05).ignore_threshold == 0.05


def test_seam_checkpoint_is_detected_and_refined_by_its_pcm(tmp_path, one_thread):
    torch.manual_seed(0)
    seam = SEAM(**TINY, num_classes=3)
    trainer = quiet_trainer(max_epochs=0)
    trainer.strategy.connect(seam)
    trainer.save_checkpoint(tmp_path / "seam.ckpt")
    model = load_checkpoint(tmp_path / "seam.ckpt")
    assert type(model) is SEAM and model.training is False
    dataset = read_dataset("synthetic", None, "train", **DEMO)
    pcm = generate_pseudo_masks(model, dataset, tmp_path / "pcm", PseudoMaskConfig(scales=(1.0,)), limit=2)
    raw = generate_pseudo_masks(
        model, dataset, tmp_path / "raw", PseudoMaskConfig(scales=(1.0,), refine="none"), limit=2
    )
    a = np.load(tmp_path / "pcm" / "cams" / "train" / "00000.npz")["maps"]
    b = np.load(tmp_path / "raw" / "cams" / "train" / "00000.npz")["maps"]
    assert a.shape == b.shape == (1, 48, 48) and not np.allclose(a, b, atol=1e-2)
    assert pcm.num_images == raw.num_images == 2


@pytest.mark.data
def test_coco_mini_through_the_pipeline(coco_mini_root, tmp_path, one_thread):
    torch.manual_seed(0)
    model = CAM(**TINY, num_classes=80, multilabel=True).eval()
    dataset = read_dataset("coco", coco_mini_root, "val")
    config = PseudoMaskConfig(scales=(1.0,), flip=True, base_size=64)
    run = generate_pseudo_masks(model, dataset, tmp_path, config, limit=4, grid_images=4, progress=False)
    assert run.num_images == 4 and run.scores is not None
    for index in range(4):
        sample = dataset.load(index)
        png = load_label_png(tmp_path / "masks" / (sample.image_id.rsplit(".", 1)[0] + ".png"))
        height, width = sample.image.shape[:2]
        assert png.shape == (height, width)  # masks at the original image size
        allowed = {0} | {c + 1 for c in sample.labels}
        assert set(np.unique(png)) <= allowed  # GT image labels decide which classes compete
        # GT semantic masks built from the instances: their classes are the image's labels (+ ignore).
        assert set(np.unique(sample.mask)) - {255} <= allowed and (sample.mask > 0).any()
    coco = json.loads((tmp_path / "pseudo_masks.json").read_text())
    assert len(coco["categories"]) == 80 and coco["categories"][0]["name"] == "person"
    assert {img["file_name"] for img in coco["images"]} == {
        dataset.load(i).image_id.rsplit(".", 1)[0] + ".png" for i in range(4)
    }
