"""Every registered training method: one training step, then its checkpoint, unchanged, in every command.

A checkpoint carries its class (``wsol.load_model`` rebuilds the network, ``load_checkpoint`` the training
system), so ``wsol cams`` (a post-hoc method and the method's own maps), ``wsol export`` and ``wsol pseudo-masks``
take any method's file with no class flag.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import pytorch_lightning as pl
import torch
from conftest import TINY_DEMO, one_step_trainer

from wsol.augment import create_mixer
from wsol.cli import main
from wsol.methods import get_method, list_methods, load_checkpoint, load_model
from wsol.models import CAMNet

pytestmark = pytest.mark.slow  # ten methods through four commands: about a minute on 2 cores

DATA = ["--data", "synthetic", "--data-options", json.dumps(TINY_DEMO)]
# Every method alone, and the dynamic mixers (they hook into the method's step and AutoMix owns modules).
CASES = {name: (name, None) for name in list_methods()} | {
    "CAM+puzzlemix": ("CAM", "puzzlemix"),
    "MixUpCAM+automix": ("MixUpCAM", "automix"),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One step of every method on the tiny demo set, saved as a Lightning checkpoint."""
    from wsol.data import WSOLDataModule

    root = tmp_path_factory.mktemp("methods")
    out = {}
    for name, (method, mixer) in CASES.items():
        torch.manual_seed(0)
        dm = WSOLDataModule("synthetic", image_size=32, batch_size=4, train_options=TINY_DEMO, val_options=TINY_DEMO)
        extra = {} if mixer is None else {"mixer": create_mixer(mixer, seed=0)}
        net = {"backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 8}, "num_classes": 3}
        model = get_method(method)(**net, **extra)
        before = [p.detach().clone() for p in model.parameters()]
        trainer = one_step_trainer(root)
        trainer.fit(model, datamodule=dm)
        loss = trainer.callback_metrics["train/loss"]
        changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
        path = root / f"{name}.ckpt"
        trainer.save_checkpoint(path)
        out[name] = (path, model.eval(), float(loss), changed)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_method_trains_and_its_checkpoint_round_trips(checkpoints, name: str) -> None:
    path, model, loss, changed = checkpoints[name]
    assert np.isfinite(loss) and changed
    system = load_checkpoint(path)
    assert type(system) is type(model) and not system.training
    net = load_model(path)  # the network alone: no losses, optimizers or Lightning
    assert isinstance(net, CAMNet) and not isinstance(net, pl.LightningModule) and not net.training
    assert type(net) is type(model.net)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for restored in (system, net):
            torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)
            expected = model.forward_with_cams(x)[1]
            torch.testing.assert_close(restored.forward_with_cams(x)[1], expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(CASES))
def test_checkpoint_works_unchanged_in_every_command(checkpoints, name: str, tmp_path, capsys) -> None:
    path, model, _, _ = checkpoints[name]
    ckpt = ["--checkpoint", str(path)]
    common = [*DATA, "--image-size", "32", "--limit", "3", "--device", "cpu"]
    for cam_method in ("cam", "native"):
        run = tmp_path / f"cams_{cam_method}"
        assert main(["cams", *ckpt, "--cam-method", cam_method, *common, "--out", str(run)]) == 0, capsys.readouterr()
        maps = sorted((run / "scoremaps").rglob("*.npy"))
        assert len(maps) == 3 and all(np.load(m, allow_pickle=False).shape == (32, 32) for m in maps)
        assert json.loads((run / "cams.json").read_text())["status"] == "complete"

    export = tmp_path / "export"
    assert main(["export", *ckpt, "--image-size", "32", "--out", str(export), "--device", "cpu"]) == 0
    meta = json.loads((export / "model.json").read_text())
    assert meta["parity"]["pass"] and meta["source"]["method"] == CASES[name][0]
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    logits = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        ["logits"], {"images": images}
    )[0]
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(torch.from_numpy(images)).numpy(), rtol=1e-4, atol=1e-4)

    masks = tmp_path / "masks"
    args = ["pseudo-masks", *ckpt, *DATA, "--out", str(masks), "--scales", "1", "--limit", "2", "--grid", "0"]
    assert main([*args, "--device", "cpu"]) == 0, capsys.readouterr()
    assert len(list((masks / "masks").rglob("*.png"))) == 2
