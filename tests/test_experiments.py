"""Every experiment YAML instantiates through the LightningCLI of ``wsol train`` and documents its row."""

import re
from pathlib import Path

import pytest
import yaml
from dataset_fixtures import write_tiny_imagenet, write_voc, write_wsoleval

from wsol.data.voc import VOC_CLASSES
from wsol.models.wsoleval import VGG16CAM, InceptionV3CAM
from wsol.training.lightning_cli import WSOLCLI

EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml"))
DATASETS = {"cub": "cub", "imagenet": "imagenet", "voc12": "voc", "tinyimagenet10": "tiny_imagenet"}


def _fixture(dataset: str, root: Path) -> int:
    """Write a tiny dataset of the YAML's layout; returns its number of classes."""
    if dataset in ("cub", "imagenet"):
        write_wsoleval(root, splits=("test",), per_class=1)
        return 3
    if dataset == "voc":
        write_voc(root)
        return len(VOC_CLASSES)
    write_tiny_imagenet(root, per_class=1)
    return 3


def _split_name(path: Path, config: dict) -> tuple[str, str, str]:
    """``method_backbone_dataset`` (multi-word methods and backbones: mixup_cam, inception_v3), the backbone read
    from the config itself rather than from a list kept by hand."""
    stem = path.stem
    backbone = config["model"]["init_args"].get("backbone", "resnet10")
    dataset = stem.rsplit("_", 1)[1]
    method = stem[: -len(f"_{backbone}_{dataset}")]
    assert stem == f"{method}_{backbone}_{dataset}", f"{path.name}: not method_{backbone}_dataset"
    return method, backbone, dataset


def test_the_published_rows_all_have_a_config():
    names = {p.stem for p in EXPERIMENTS}
    expected = {f"cam_{b}_{d}" for b in ("vgg16", "inception_v3", "resnet50") for d in ("cub", "imagenet")}
    # The reference benchmark's comparison rows on ResNet50.
    expected |= {f"{m}_resnet50_{d}" for m in ("has", "acol", "spg", "adl") for d in ("cub", "imagenet")}
    expected |= {
        "cutmix_resnet50_cub",
        "seam_resnet50_voc12",
        "mixup_cam_resnet50_voc12",
        "cam_resnet10_tinyimagenet10",
        "bgc_resnet50_cub",
        "bas_resnet50_cub",
    }
    assert names == expected


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_header_names_paper_number_and_command(path):
    text = path.read_text()
    header = text.split("\nseed_everything:")[0]
    assert all(line.startswith("#") for line in header.splitlines() if line.strip())
    assert re.search(r"^# Paper: +\S", header, re.M) and re.search(r"^# Published: +\S", header, re.M)
    assert f"# Command:   wsol train --config experiments/{path.name}\n" in header
    if "tinyimagenet" not in path.stem:
        assert re.search(r"\d\d\.\d", header.split("# Published:")[1].split("# Command:")[0])  # a number
    config = yaml.safe_load(text)
    assert "num_classes" not in config["model"]["init_args"]  # linked from the data, never written
    assert config["data"]["init_args"].get("root") is None  # no machine paths: $WSOL_DATA/<folder>


@pytest.mark.slow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_instantiates(path, tmp_path):
    from wsol.methods import METHODS

    config = yaml.safe_load(path.read_text())
    method, backbone, dataset = _split_name(path, config)
    init = config["model"]["init_args"]
    assert init.get("backbone", "resnet10") == backbone and config["data"]["init_args"]["dataset"] == DATASETS[dataset]
    num_classes = _fixture(DATASETS[dataset], tmp_path / "data")
    args = ["--config", str(path), "--data.init_args.root", str(tmp_path / "data")]
    args += ["--model.init_args.pretrained", "false", "--trainer.logger", "false"]
    args += ["--trainer.default_root_dir", str(tmp_path / "runs"), "--data.init_args.num_workers", "0"]
    cli = WSOLCLI(args)
    model = cli.model
    # The class the YAML names is the registered training method of that name (the registry, not a list).
    assert type(model) is METHODS.get(config["model"]["class_path"].rpartition(".")[2])
    assert model.hparams.num_classes == num_classes == model.head.weight.shape[0]
    assert model.hparams.multilabel is (dataset == "voc12")
    assert model.hparams.lr == init.get("lr", 0.1) and cli.trainer.max_epochs == config["trainer"]["max_epochs"]
    expected_backbone = {"vgg16": VGG16CAM, "inception_v3": InceptionV3CAM}.get(backbone)
    if expected_backbone is not None:
        assert isinstance(model.backbone, expected_backbone)
    if method == "cutmix":
        assert type(model.mixer).__name__ == "CutMix" and model.mixer.alpha == 1.0 and model.mixer.prob == 1.0
    if method == "mixup_cam":
        assert type(model.mixer).__name__ == "MixUp" and model.mixer.alpha == 0.2


def test_yamls_hold_overrides_only():
    # A key equal to its default is noise in a config: each YAML keeps what differs, explained in its header.
    import inspect

    import pytorch_lightning as pl

    defaults = {k: p.default for k, p in inspect.signature(pl.Trainer.__init__).parameters.items()}
    for path in EXPERIMENTS:
        config = yaml.safe_load(path.read_text())
        same = [k for k, v in config.get("trainer", {}).items() if k in defaults and defaults[k] == v]
        assert not same, f"{path.name}: trainer keys at their defaults: {same}"
        assert "ckpt_path" not in config and len(path.read_text().splitlines()) < 60, path.name


def test_small_data_yaml_mirrors_the_quickstart_recipe():
    from wsol.training.recipes import QUICKSTART

    config = yaml.safe_load((EXPERIMENTS[0].parent / "cam_resnet10_tinyimagenet10.yaml").read_text())
    model = dict(config["model"]["init_args"])
    assert model.pop("cam_curve_interval") == 0.001  # the papers' grid for the reported number
    recipe = QUICKSTART["model"]
    for key, value in recipe.items():
        assert model.get(key, _init_default(key)) == value, key
    assert config["trainer"]["max_epochs"] == QUICKSTART["epochs"]
    assert config["trainer"]["precision"] == QUICKSTART["precision"]
    assert config["data"]["init_args"].get("batch_size", 64) == QUICKSTART["batch_size"]


def _init_default(key: str) -> object:
    import inspect

    from wsol.methods import WSOLModule

    return inspect.signature(WSOLModule.__init__).parameters[key].default
