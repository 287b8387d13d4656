"""Scoring another library's CAMs: ``wsol metadata`` writes the GT, the maps come at feature resolution (as
pytorch-grad-cam or torch-cam give them before their own resizing), and ``wsol evaluate --upsample`` scores them
exactly as ``wsol cams`` scores the same maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from wsol.cli import main

DATA_OPTIONS = {"train_per_class": 2, "val_per_class": 6, "image_size": 40, "num_classes": 3, "clutter": 2}
DATA = ["--data", "synthetic", "--data-options", json.dumps(DATA_OPTIONS)]
MODEL = ["--backbone", "resnet10", "--backbone-kwargs", json.dumps({"width": 8}), "--seed", "3"]


def _foreign_maps(folder: Path) -> int:
    """Low-resolution raw maps of the GT class, one ``<image_id>.npy`` each, as a foreign tool would save them."""
    from wsol.cams import create_cam, load_cam_model
    from wsol.cams.runner import protocol_loader
    from wsol.commands.arguments import parse_data_spec

    dataset = parse_data_spec("synthetic", "val", DATA_OPTIONS).open()
    model = load_cam_model(backbone="resnet10", num_classes=3, backbone_kwargs={"width": 8}, seed=3)
    method = create_cam("cam", model.module)
    side = 0
    for batch in protocol_loader(dataset, model, 64, "pil", 8, None):
        maps = method(batch["image"], batch["label"]).maps
        for image_id, raw in zip(batch["image_id"], maps, strict=True):
            path = folder / f"{image_id}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, raw.to(torch.float32).numpy())
            side = raw.shape[-1]
    return side


def test_foreign_low_resolution_maps_score_like_wsols_own(tmp_path, capsys):
    run = tmp_path / "cams"
    assert main(["cams", *MODEL, "--cam-method", "cam", *DATA, "--image-size", "64", "--out", str(run)]) == 0
    args = ["evaluate", "--metadata", str(run / "metadata"), "--scoremaps", str(run / "scoremaps"), "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "ours")]) == 0
    ours = json.loads((tmp_path / "ours" / "metrics.json").read_text())

    meta = tmp_path / "meta" / "val"
    assert main(["metadata", *DATA, "--out", str(meta), "--no-progress"]) == 0
    assert "wrote the metadata of 18 images" in capsys.readouterr().out
    for name in ("image_ids", "class_labels", "image_sizes", "localization"):  # the same GT as wsol cams wrote
        assert (meta / f"{name}.txt").read_text() == (run / "metadata" / f"{name}.txt").read_text(), name
    foreign = tmp_path / "foreign"
    side = _foreign_maps(foreign)
    assert side < 64  # feature resolution, not the image's

    args = ["evaluate", "--metadata", str(meta), "--scoremaps", str(foreign), "--no-progress"]
    assert main([*args, "--upsample", "64", "--out", str(tmp_path / "theirs")]) == 0
    assert "after bicubic upsampling to 64x64" in capsys.readouterr().out
    theirs = json.loads((tmp_path / "theirs" / "metrics.json").read_text())
    assert theirs["MaxBoxAccV2"] == ours["MaxBoxAccV2"]  # every per-IoU value and best threshold
    assert theirs["curves"]["MaxBoxAccV2"] == ours["curves"]["MaxBoxAccV2"]

    # Without --upsample the boxes are shrunk onto the small maps: another (wrong) number, not an error.
    assert main([*args, "--normalization", "minmax", "--out", str(tmp_path / "naive")]) == 0
    naive = json.loads((tmp_path / "naive" / "metrics.json").read_text())
    assert naive["MaxBoxAccV2"]["value"] != ours["MaxBoxAccV2"]["value"]


def test_metadata_refuses_multilabel_data(tmp_path, capsys):
    from dataset_fixtures import write_voc

    write_voc(tmp_path / "voc")
    assert main(["metadata", "--data", f"voc={tmp_path / 'voc'}", "--out", str(tmp_path / "m"), "--no-progress"]) == 2
    assert "one class per image; this data is multi-label" in capsys.readouterr().err
