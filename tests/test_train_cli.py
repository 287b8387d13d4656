"""``wsol train --config``: a fast_dev_run on a generated fixture in every layout, and the CLI plumbing."""

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from dataset_fixtures import write_coco, write_folder, write_tiny_imagenet, write_voc, write_wsoleval

from wsol.cli import main
from wsol.training.lightning_cli import train

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _write_layout(layout: str, root: Path) -> tuple[str, dict, int, bool]:
    """Fixture of ``layout`` under ``root``: (reader name, datamodule overrides, classes, multilabel)."""
    if layout in ("cub", "imagenet"):
        write_wsoleval(root, splits=("train", "test"), per_class=2)
        return layout, {"val_split": "test"}, 3, False
    if layout == "openimages":
        write_wsoleval(root, splits=("train", "test"), per_class=2, masks=True)
        return layout, {"val_split": "test"}, 3, False
    if layout == "voc":
        write_voc(root)
        return "voc", {}, 20, True
    if layout == "coco":
        write_coco(root, "train2017")
        write_coco(root, "val2017", seed=1)
        return "coco", {}, 3, True
    if layout == "folder":
        write_folder(root)
        return "folder", {}, 3, False
    write_tiny_imagenet(root, per_class=2)
    return "tiny_imagenet", {}, 3, False


def _config(tmp_path: Path, dataset: str, data: dict) -> Path:
    config = {
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "default_root_dir": str(tmp_path / "runs")},
        "model": {"class_path": "wsol.methods.CAM", "init_args": {
            "backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 8}, "lr": 0.1}},
        "data": {"class_path": "wsol.data.WSOLDataModule", "init_args": {
            "dataset": dataset, "root": str(tmp_path / "data"), "image_size": 32, "batch_size": 2, **data}},
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("layout", ["cub", "imagenet", "openimages", "voc", "coco", "folder", "tiny_imagenet"])
def test_fast_dev_run_in_every_layout(layout, tmp_path):
    dataset, data, num_classes, multilabel = _write_layout(layout, tmp_path / "data")
    cli = train(["--config", str(_config(tmp_path, dataset, data)), "--trainer.fast_dev_run", "true"])
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert cli.model.hparams.num_classes == num_classes and cli.model.hparams.multilabel is multilabel
    metrics = cli.trainer.callback_metrics
    assert math.isfinite(float(metrics["train/loss"]))
    assert math.isfinite(float(metrics["val/loss"]))
    if not multilabel:  # single-label data with boxes: localization ran on the validation batch
        assert 0.0 <= float(metrics["val/MaxBoxAccV2"]) <= 100.0


def test_wsol_train_command_runs_a_config(tmp_path, capsys):
    dataset, data, _, _ = _write_layout("voc", tmp_path / "data")
    config = _config(tmp_path, dataset, data)
    assert main(["train", "--config", str(config), "--trainer.fast_dev_run", "true"]) == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    assert "usage: wsol train" in capsys.readouterr().out


def test_fit_logs_tensorboard_and_csv_and_validate_rescores_the_checkpoint(tmp_path, capsys):
    dataset, data, _, _ = _write_layout("tiny_imagenet", tmp_path / "data")
    config = _config(tmp_path, dataset, data)
    text = config.read_text().replace("logger: false", "logger: true")
    config.write_text(text)
    common = ["--config", str(config), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    assert main(["fit", *common]) == 0
    logs = tmp_path / "runs" / "lightning_logs" / "version_0"
    assert list(logs.glob("events.out.tfevents.*")) and (logs / "metrics.csv").is_file()
    rows = (logs / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    last = dict(zip(header, rows[-1].split(","), strict=True))
    capsys.readouterr()
    # Re-scoring the last checkpoint gives the numbers logged at the end of training.
    from wsol.training.lightning_cli import run_stage

    cli = run_stage("validate", [*common, "--ckpt_path", "last", "--trainer.logger", "false"], prog="wsol validate")
    scored = cli.trainer.callback_metrics
    for key in ("val/top1_acc", "val/MaxBoxAccV2"):
        assert float(scored[key]) == pytest.approx(float(last[key]), abs=1e-4), key
    assert main(["validate", *common, "--ckpt_path", "last", "--trainer.logger", "false"]) == 0
    assert "val/MaxBoxAccV2" in capsys.readouterr().out  # Lightning's table of the validated metrics
    # predict: the same checkpoint's maps in the reference layout, which wsol evaluate scores to the same number.
    out = tmp_path / "predicted"
    assert main(["predict", *common, "--ckpt_path", "last", "--trainer.logger", "false", "--out", str(out)]) == 0
    assert len(list((out / "scoremaps").rglob("*.npy"))) == 6 and (out / "predictions.txt").is_file()
    interval = str(cli.model.hparams.cam_curve_interval)
    evaluate = ["evaluate", "--metadata", str(out / "metadata"), "--scoremaps", str(out / "scoremaps"),
                "--predictions", str(out / "predictions.txt"), "--cam-curve-interval", interval, "--no-progress",
                "--out", str(out / "eval")]  # fmt: skip
    assert main(evaluate) == 0
    scored_again = json.loads((out / "eval" / "metrics.json").read_text())
    assert scored_again["MaxBoxAccV2"]["value"] == pytest.approx(float(scored["val/MaxBoxAccV2"]), abs=1e-4)
    capsys.readouterr()
    assert main(["predict", *common, "--ckpt_path", "last", "--trainer.logger", "false"]) == 2
    assert "wsol predict needs --out DIR" in capsys.readouterr().err
    other = tmp_path / "elsewhere"
    args = [*common, "--trainer.default_root_dir", str(other), "--ckpt_path", "last", "--trainer.logger", "false"]
    assert main(["validate", *args]) == 2
    assert "no last.ckpt in" in capsys.readouterr().err


def test_bad_option_is_reported_by_lightning_cli(tmp_path, capsys):
    dataset, data, _, _ = _write_layout("voc", tmp_path / "data")
    config = _config(tmp_path, dataset, data)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", str(config), "--model.init_args.no_such_option", "1"])
    assert exit_info.value.code != 0
    assert "no_such_option" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["seam_resnet50_voc12", "mixup_cam_resnet50_voc12"])
def test_wsss_experiments_train_on_a_voc_fixture(name, tmp_path):
    write_voc(tmp_path / "data")
    # The shipped config with a tiny backbone, 32 px and the VOC train list instead of train_aug.
    cli = train([
        "--config", str(EXPERIMENTS / f"{name}.yaml"), "--trainer.fast_dev_run", "true",
        "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "runs"),
        "--data.init_args.root", str(tmp_path / "data"), "--data.init_args.image_size", "64",
        "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0",
        "--data.init_args.train_options", "{}", "--model.init_args.pretrained", "false",
        "--model.init_args.backbone", "resnet10", "--model.init_args.backbone_kwargs", '{"width": 8}',
    ])  # fmt: skip
    assert cli.trainer.state.finished and cli.model.hparams.multilabel is True
    terms = {"seam_resnet50_voc12": ("train/er", "train/ecr"), "mixup_cam_resnet50_voc12": ("train/ent", "train/con")}
    for key in ("train/loss", *terms[name]):
        assert math.isfinite(float(cli.trainer.callback_metrics[key]))


def test_small_data_experiment_trains_on_a_tiny_imagenet_fixture(tmp_path):
    write_tiny_imagenet(tmp_path / "data", per_class=2)
    cli = train([
        "--config", str(EXPERIMENTS / "cam_resnet10_tinyimagenet10.yaml"), "--trainer.fast_dev_run", "true",
        "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "runs"),
        "--data.init_args.root", str(tmp_path / "data"), "--data.init_args.image_size", "32",
        "--data.init_args.batch_size", "4", "--data.init_args.num_workers", "0",
    ])  # fmt: skip
    assert cli.model.hparams.num_classes == 3 and cli.trainer.state.finished
    assert math.isfinite(float(cli.trainer.callback_metrics["train/loss"]))
    assert 0.0 <= float(cli.trainer.callback_metrics["val/top1_acc"]) <= 100.0
    assert 0.0 <= float(cli.trainer.callback_metrics["val/MaxBoxAccV2"]) <= 100.0


def test_backbone_given_by_class_path(tmp_path):
    dataset, data, _, _ = _write_layout("voc", tmp_path / "data")
    config = _config(tmp_path, dataset, data)
    backbone = '{"class_path": "wsol.models.wsoleval.VGG16CAM", "init_args": {"pretrained": false}}'
    cli = train(["--config", str(config), "--trainer.fast_dev_run", "true", "--model.init_args.backbone", backbone])
    assert type(cli.model.backbone).__name__ == "VGG16CAM" and cli.model.head.weight.shape == (20, 1024, 1, 1)
    assert cli.trainer.state.finished


def test_metric_names_are_safe_in_checkpoint_file_names(tmp_path):
    from wsol.training.callbacks import SafeNameCheckpoint

    callback = SafeNameCheckpoint(dirpath=tmp_path, filename="{epoch}-{val/MaxBoxAccV2:.2f}")
    name = callback.format_checkpoint_name({"epoch": torch.tensor(3), "val/MaxBoxAccV2": torch.tensor(59.6667)})
    assert Path(name).name == "epoch=3-val_MaxBoxAccV2=59.67.ckpt" and Path(name).parent == tmp_path

    dataset, data, _, _ = _write_layout("tiny_imagenet", tmp_path / "data")
    config = yaml.safe_load(_config(tmp_path, dataset, data).read_text())
    config["trainer"]["callbacks"] = [{
        "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
        "init_args": {"dirpath": str(tmp_path / "best"), "filename": "{epoch}-{val/MaxBoxAccV2:.2f}",
                      "monitor": "val/MaxBoxAccV2", "mode": "max"},
    }]  # fmt: skip
    path = tmp_path / "callbacks.yaml"
    path.write_text(yaml.safe_dump(config))
    train(["--config", str(path), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1"])
    written = sorted(p.relative_to(tmp_path / "best").as_posix() for p in (tmp_path / "best").rglob("*.ckpt"))
    assert len(written) == 1 and re.fullmatch(r"epoch=0-val_MaxBoxAccV2=\d+\.\d\d\.ckpt", written[0]), written


def test_spelt_out_metric_names_match_lightnings_inserted_names():
    from wsol.training.callbacks import spell_out_metric_names

    assert (
        spell_out_metric_names("{epoch}-{val/MaxBoxAccV2:.2f}") == "epoch={epoch}-val_MaxBoxAccV2={val/MaxBoxAccV2:.2f}"
    )
    assert spell_out_metric_names("best_{a/b/c:03d}") == "best_a_b_c={a/b/c:03d}"
    assert spell_out_metric_names("plain") == "plain"


def test_config_checkpoints_are_configured_not_reclassed(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    from wsol.training.callbacks import SafeNameCheckpoint
    from wsol.training.lightning_cli import WSOLCLI

    dataset, data, _, _ = _write_layout("tiny_imagenet", tmp_path / "data")
    config = str(_config(tmp_path, dataset, data))
    metrics = {"epoch": torch.tensor(3), "val/MaxBoxAccV2": torch.tensor(59.6667)}
    for class_path, kind in [("pytorch_lightning.callbacks.ModelCheckpoint", ModelCheckpoint),
                             ("wsol.training.SafeNameCheckpoint", SafeNameCheckpoint)]:  # fmt: skip
        init = {"dirpath": str(tmp_path), "monitor": "val/x", "filename": "{epoch}-{val/MaxBoxAccV2:.2f}"}
        own = json.dumps([{"class_path": class_path, "init_args": init}])
        (callback,) = WSOLCLI(["--config", config, "--trainer.callbacks", own]).trainer.checkpoint_callbacks
        assert type(callback) is kind and callback.monitor == "val/x", class_path
        assert Path(callback.format_checkpoint_name(dict(metrics))).name == "epoch=3-val_MaxBoxAccV2=59.67.ckpt"
    old = '[{"class_path": "wsol.callbacks.ModelCheckpoint", "init_args": {"dirpath": "x"}}]'  # the name before
    with pytest.warns(FutureWarning, match="write that class_path"):
        (callback,) = WSOLCLI(["--config", config, "--trainer.callbacks", old]).trainer.checkpoint_callbacks
    assert type(callback) is SafeNameCheckpoint
