"""Plugins (wsol.plugins), the registry's origins and prefixes, the backbone contract, and checkpoints that name
what they need."""

from __future__ import annotations

import ast
import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import wsol.plugins as plugins
from wsol.models import BACKBONES, backbone_contract, create_backbone
from wsol.models.contract import IMAGENET_MEAN
from wsol.registry import Registry

ROOT = Path(__file__).resolve().parents[1]

BACKBONE_MODULE = """
from torch import nn
import wsol

@wsol.register_backbone("{name}")
class Net(nn.Module):
    stride = 2
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.out_channels = width
        self.conv = nn.Conv2d(3, width, 3, stride=2, padding=1)
    def forward(self, x):
        return self.conv(x)
"""


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path for plugin modules; plugin state, registrations and modules are undone afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_loaded", [])
    monkeypatch.setattr(plugins, "_discovered", False)
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    before = set(BACKBONES.names())
    modules = set(sys.modules)
    yield tmp_path
    for name in set(BACKBONES.names()) - before:
        BACKBONES.remove(name)
    for name in set(sys.modules) - modules:
        if name.startswith("plug_"):
            del sys.modules[name]
    importlib.invalidate_caches()


def _module(folder: Path, name: str, text: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(text))
    importlib.invalidate_caches()


def test_import_flags_are_taken_out_of_the_command_line_anywhere():
    split = plugins.split_import_flags
    assert split(["--import", "a", "cams", "--import=b.c", "--out", "x"]) == (["a", "b.c"], ["cams", "--out", "x"])
    assert split(["fit", "--config", "x.yaml"]) == ([], ["fit", "--config", "x.yaml"])
    for argv in (["--import"], ["--import", "--out"], ["--import="]):
        with pytest.raises(ValueError, match="--import needs a module name"):
            split(argv)


def test_a_flagged_plugin_registers_and_its_names_remember_it(plugin_dir):
    _module(plugin_dir, "plug_flag", BACKBONE_MODULE.format(name="flagnet"))
    plugins.load_plugins(["plug_flag"])
    plugins.load_plugins(["plug_flag"])  # once per process
    assert "plug_flag" in plugins.loaded_plugins() and plugins.loaded_plugins().count("plug_flag") == 1
    assert BACKBONES.origin("flagnet") == "plug_flag" and BACKBONES.origin("resnet10") is None
    net = create_backbone("flagnet", width=6)
    assert net.out_channels == 6 and net.wsol_backbone_record == {
        "name": "flagnet",
        "kwargs": {"width": 6},
        "plugin": "plug_flag",
    }


def test_the_environment_variable_loads_on_a_registrys_first_use(plugin_dir, monkeypatch):
    _module(plugin_dir, "plug_env", BACKBONE_MODULE.format(name="envnet"))
    monkeypatch.setenv(plugins.ENV_VAR, " plug_env , ")
    monkeypatch.setattr(BACKBONES, "_plugins_loaded", True)  # as after its first use in this process
    assert "envnet" not in BACKBONES  # a registry loads plugins on its first use only
    fresh: Registry[int] = Registry("gadget")
    assert fresh.names() == [] and "envnet" in BACKBONES and BACKBONES.origin("envnet") == "plug_env"


def test_an_installed_entry_point_loads_its_module_and_calls_a_named_function(plugin_dir):
    _module(plugin_dir, "plug_ep", BACKBONE_MODULE.format(name="epnet"))
    _module(plugin_dir, "plug_ep_setup", "CALLS = []\ndef setup():\n    CALLS.append(1)\n")
    info = plugin_dir / "plug_ep-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plug-ep\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[wsol.plugins]\nnet = plug_ep\nsetup = plug_ep_setup:setup\n")
    assert ("plug_ep", None) in plugins._entry_point_targets()
    plugins.load_plugins()
    assert "epnet" in BACKBONES and BACKBONES.origin("epnet") == "plug_ep"
    assert sys.modules["plug_ep_setup"].CALLS == [1]


def test_a_failing_plugin_ends_in_one_line_naming_it(plugin_dir, capsys):
    from wsol.cli import main

    _module(plugin_dir, "plug_bad", "raise RuntimeError('boom\\nsecond line')\n")
    with pytest.raises(plugins.PluginError, match=r"^plugin 'plug_bad' \(from --import\) failed to import: Runtime"):
        plugins.load_plugins(["plug_bad"])
    assert main(["--import", "plug_bad", "backbones"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["wsol backbones: error: plugin 'plug_bad' (from --import) failed to import: RuntimeError: boom"]
    assert main(["backbones", "--import", "plug_missing_xyz"]) == 2
    assert "No module named 'plug_missing_xyz'" in capsys.readouterr().err


def test_every_command_takes_import_and_a_plugins_backbone_is_listed(plugin_dir, capsys):
    from wsol.cli import build_parser, main

    _module(plugin_dir, "plug_cli", BACKBONE_MODULE.format(name="clinet"))
    assert "--import MODULE" in build_parser().format_help()
    assert main(["backbones", "--import", "plug_cli"]) == 0
    assert "clinet" in capsys.readouterr().out.split()
    out = plugin_dir / "onnx"
    argv = ["export", "--backbone", "clinet", "--num-classes", "3", "--image-size", "32", "--no-parity"]
    assert main([*argv, "--out", str(out)]) == 0 and (out / "model.onnx").stat().st_size > 0


def test_registry_prefix_origin_and_registration_order():
    reg: Registry[object] = Registry("thing", loader=lambda: reg.register("builtin")("B"))
    reg.register_prefix("x:")(lambda rest: f"resolved {rest}")

    class Zeta: ...

    reg.register("zeta")(Zeta)  # from this test module: the built-ins are loaded first, so they keep first place
    assert [name for name, _ in reg.entries()] == ["builtin", "zeta"] and reg.get("x:abc") == "resolved abc"
    assert reg.prefixes() == ["x:"] and "x:abc" not in reg and reg.origin("zeta") == __name__
    with pytest.raises(KeyError, match=r"unknown thing 'y'; registered: builtin, zeta, or 'x:<name>'"):
        reg.get("y")
    with pytest.raises(ValueError, match="starts with a resolved prefix"):
        reg.register("x:taken")("no")
    assert BACKBONES.prefixes() == ["timm:"]


def _imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` that ``path`` imports (at the top or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.startswith(package + ".") and name.count(".") == 2}
    return found


def test_no_module_of_wsol_models_imports_one_that_imports_it_back():
    folder = ROOT / "wsol" / "models"
    graph = {f"wsol.models.{p.stem}": _imports(p, "wsol.models") for p in folder.glob("*.py") if p.stem != "__init__"}
    assert len(graph) > 10 and "wsol.models.timm_models" not in graph["wsol.models.backbone"]

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert [m for m in graph if reaches(m, m, {m})] == []


class _Plain(nn.Module):
    out_channels, stride = 4, 2

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.out_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_the_backbone_contract_fills_defaults_and_names_what_is_wrong():
    plain = _Plain()
    contract = backbone_contract(plain)
    assert (contract.out_channels, contract.stride, contract.mean, contract.classifier) == (4, 2, IMAGENET_MEAN, None)
    plain.classifier = nn.Linear(4, 10)
    plain.mean = (0.5, 0.5, 0.5)
    assert backbone_contract(plain).classifier is plain.classifier and backbone_contract(plain).mean == (0.5,) * 3
    plain.classifier = nn.Linear(7, 10)  # not over the pooled features: no classifier
    assert backbone_contract(plain).classifier is None
    for attr, value, message in (
        ("stride", 0, "_Plain's 'stride' must be a positive int, got 0"),
        ("out_channels", 2.5, "'out_channels' must be a positive int"),
        ("std", (0.2, 0.0, 0.2), "'std' must be 3 finite numbers above 0"),
        ("mean", (0.5, 0.5), "'mean' must be 3 finite numbers"),
    ):
        broken = _Plain()
        setattr(broken, attr, value)
        with pytest.raises(ValueError, match=message):
            backbone_contract(broken)
    no_stride = nn.Identity()
    no_stride.out_channels = 4
    with pytest.raises(ValueError, match="the backbone Identity must expose 'stride'"):
        backbone_contract(no_stride)


def test_a_plain_builder_gets_pretrained_and_weights_only_when_asked(tmp_path):
    BACKBONES.register("plain_t")(_Plain)
    try:
        assert create_backbone("plain_t", width=3).out_channels == 3
        with pytest.raises(ValueError, match="backbone 'plain_t' has no pretrained weights"):
            create_backbone("plain_t", pretrained=True)
        source = _Plain(width=3)
        torch.save(source.state_dict(), tmp_path / "w.pth")
        loaded = create_backbone("plain_t", weights_path=tmp_path / "w.pth", width=3)
        assert torch.equal(loaded.conv.weight, source.conv.weight)
    finally:
        BACKBONES.remove("plain_t")


def _save(model: nn.Module, path: Path) -> None:
    import pytorch_lightning as pl

    trainer = pl.Trainer(max_epochs=0, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)


def test_a_checkpoint_names_its_plugins_and_loads_once_they_are(plugin_dir, tmp_path):
    import wsol
    from wsol.methods import CAM

    _module(plugin_dir, "plug_ckpt", BACKBONE_MODULE.format(name="ckptnet"))
    plugins.load_plugins(["plug_ckpt"])
    model = CAM(backbone="ckptnet", num_classes=3, backbone_kwargs={"width": 5}, batch_size=2)
    _save(model, tmp_path / "m.ckpt")
    needs = torch.load(tmp_path / "m.ckpt", weights_only=True)["wsol_needs"]
    assert needs == {
        "method": {"name": "CAM", "plugin": None},
        "backbone": {"name": "ckptnet", "kwargs": {"width": 5}, "plugin": "plug_ckpt"},
    }
    net = wsol.load_model(tmp_path / "m.ckpt")
    assert type(net.backbone).__name__ == "Net" and net.backbone.out_channels == 5
    torch.testing.assert_close(net.state_dict(), model.net.state_dict())
    BACKBONES.remove("ckptnet")
    with pytest.raises(ValueError, match=r"m\.ckpt needs plugin plug_ckpt: pass --import plug_ckpt .*'ckptnet'"):
        wsol.load_model(tmp_path / "m.ckpt")


def test_a_backbone_module_rebuilds_from_its_class_and_recorded_arguments(tmp_path):
    import wsol
    from wsol.methods import CAM
    from wsol.models.backbone import record_class_arguments

    backbone = _Plain(width=6)
    record_class_arguments(backbone, {"width": 6})  # what a YAML class_path records
    _save(CAM(backbone=backbone, num_classes=2, batch_size=2), tmp_path / "c.ckpt")
    net = wsol.load_model(tmp_path / "c.ckpt")
    assert type(net.backbone) is _Plain and net.backbone.out_channels == 6

    _save(CAM(backbone=_Plain(width=6), num_classes=2, batch_size=2), tmp_path / "u.ckpt")  # arguments unknown
    with pytest.raises(ValueError, match=r"u\.ckpt was trained with a .*_Plain module whose arguments were not"):
        wsol.load_model(tmp_path / "u.ckpt")


@pytest.mark.slow
def test_a_yaml_class_path_backbone_trains_and_its_checkpoint_serves_every_command(tmp_path, monkeypatch):
    from wsol.onnx import load_checkpoint_model
    from wsol.training.lightning_cli import train

    monkeypatch.setenv("WSOL_CACHE", str(tmp_path / "cache"))
    data = {"num_classes": 2, "train_per_class": 4, "val_per_class": 2, "image_size": 32}
    backbone = {"class_path": f"{__name__}._Plain", "init_args": {"width": 6}}
    train([
        "--model", "wsol.methods.CAM", "--model.init_args.backbone", json.dumps(backbone),
        "--model.init_args.batch_size", "4", "--data", "wsol.data.WSOLDataModule",
        "--data.init_args.image_size", "32", "--data.init_args.batch_size", "4",
        "--data.init_args.train_options", json.dumps(data), "--data.init_args.val_options", json.dumps(data),
        "--trainer.max_epochs", "1", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path / "run"),
    ])  # fmt: skip
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    record = torch.load(path, weights_only=True)["wsol_needs"]["backbone"]
    assert record == {"name": None, "class": f"{__name__}._Plain", "kwargs": {"width": 6}, "plugin": __name__}
    loaded = load_checkpoint_model(path)  # what wsol cams and wsol export read
    assert type(loaded.model.backbone) is _Plain and loaded.model.backbone.out_channels == 6
    assert loaded.backbone == f"{__name__}._Plain" and loaded.method == "CAM"
