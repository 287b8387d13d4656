"""Tests of SPG: guidance masks and masked BCE on hand-made tensors, wiring, gradients and a real training step."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import one_step_trainer
from torch import nn

from wsol.augment import CutMix
from wsol.methods.checkpoint import checkpoint_method, load_checkpoint
from wsol.methods.spg import SPG, SPG_IGNORE, spg_bce, spg_masks
from wsol.models import Backbone

TINY = {"backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 8}, "num_classes": 3, "batch_size": 4}
X = SPG_IGNORE


def make_batch(b: int = 4, k: int = 3, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(b) % k
    return {"image": torch.randn(b, 3, size, size, generator=g), "target": torch.eye(k)[labels], "label": labels}


# ------------------------------------------------------------------------------ pure functions
def test_masks_hand_computed() -> None:
    maps = torch.tensor(
        [
            [[[0.0, 0.25, 0.5], [0.75, 0.8, 0.9], [1.0, 0.2, 0.3]]],  # 3 pixels > 0.75: no fallback
            [[[0.0, 0.2, 0.4], [0.5, 0.6, 0.45], [0.3, 0.1, 0.8]]],  # 1 pixel > 0.75: threshold 0.7 * 0.8
        ]
    )
    expected = torch.tensor(
        [
            # > 0.75 -> 1 (0.75 itself is not); < 0.25 -> 0 (0.25 itself is not); else ignored
            [[[0.0, X, X], [X, 1.0, 1.0], [1.0, 0.0, X]]],
            # fallback threshold 0.56: 0.6 and 0.8 are foreground
            [[[0.0, 0.0, X], [X, 1.0, X], [X, 0.0, 1.0]]],
        ]
    )
    torch.testing.assert_close(spg_masks(maps, high=0.75, low=0.25, min_foreground=2), expected)
    # With min_foreground=0 the second image keeps its 0.75 threshold: only 0.8 is foreground.
    expected[1, 0, 1, 1] = X
    torch.testing.assert_close(spg_masks(maps, high=0.75, low=0.25, min_foreground=0), expected)


def test_masks_background_overrides_fallback_foreground() -> None:
    weak = torch.tensor([[[0.01, 0.02], [0.015, 0.005]]])  # fallback threshold 0.014, all below low
    torch.testing.assert_close(spg_masks(weak, high=0.7, low=0.1), torch.zeros_like(weak))


def test_bce_hand_computed_2x2() -> None:
    logits = torch.tensor([[[[0.0, math.log(3.0)], [2.0, -1.0]]]], requires_grad=True)
    target = torch.tensor([[[[1.0, 0.0], [X, 1.0]]]])
    # t=1, z=0: log 2; t=0, z=ln 3: -log(1 - 3/4) = log 4; ignored; t=1, z=-1: log(1 + e).
    expected = (math.log(2.0) + math.log(4.0) + math.log(1.0 + math.e)) / 3
    loss = spg_bce(logits, target)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert logits.grad[0, 0, 1, 0] == 0.0  # the ignored pixel gets no gradient
    # d/dz = (s(z) - t) / 3 on the decided pixels
    assert logits.grad[0, 0, 0, 0].item() == pytest.approx((0.5 - 1.0) / 3)
    all_ignored = spg_bce(logits, torch.full_like(target, X))
    assert all_ignored.item() == 0.0 and all_ignored.requires_grad
    with pytest.raises(ValueError, match="shape"):
        spg_bce(logits, target[..., :1])


# ----------------------------------------------------------------------------------- wiring
def test_network_and_loss_terms() -> None:
    torch.manual_seed(0)
    model = SPG(head_channels=16, **TINY)
    # body children: conv, bn, relu, maxpool, layer1..4; (-3, -2) = layer2 (16 ch) and layer3 (32 ch)
    assert model.branches["b1"][0].in_channels == 16 and model.branches["b2"][0].in_channels == 32
    assert model.branches["shared"][0].out_channels == 16 and model.branches["c"][0].out_channels == 8
    batch = make_batch()
    maps, b1, b2, c = model.spg_forward(batch["image"])
    # 32 px, stem stride 2: layer2 at 8x8, layer3 at 4x4, layer4 at 2x2
    assert (
        maps.shape == (4, 3, 2, 2) and b1.shape == (4, 1, 8, 8) and b2.shape == (4, 1, 4, 4) and c.shape == (4, 1, 2, 2)
    )
    model.eval()
    with torch.no_grad():
        features, f1, f2 = model._body_features(batch["image"])
        torch.testing.assert_close(features, model.features(batch["image"]))
        logits, cams = model.forward_with_cams(batch["image"])
        torch.testing.assert_close(cams, model.spg_forward(batch["image"])[0])  # the CAM is the classifier's
        torch.testing.assert_close(logits, cams.mean(dim=(2, 3)))
    model.train()
    total, terms = model.loss(batch)
    assert set(terms) == {"cls", "spg_b2", "spg_b1", "spg_c"}
    assert total.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-6)
    half = SPG(aux_weight=0.5, head_channels=16, **TINY)
    half.load_state_dict(model.state_dict())
    total_half, terms_half = half.loss(batch)
    aux = terms_half["spg_b2"] + terms_half["spg_b1"] + terms_half["spg_c"]
    assert total_half.item() == pytest.approx((terms_half["cls"] + 0.5 * aux).item(), rel=1e-6)


def test_gradients_reach_backbone_and_every_branch() -> None:
    torch.manual_seed(0)
    model = SPG(**TINY)
    _, terms = model.loss(make_batch())
    terms["spg_b1"].backward()  # B1 reads layer2: it trains layers up to layer2, b1 and the shared tail only
    grads = {n: p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()}
    assert grads["net.backbone.body.0.weight"] and grads["net.backbone.body.5.0.conv1.weight"]
    assert not any(
        grads[n] for n in grads if n.startswith(("net.backbone.body.6.", "net.backbone.body.7.", "net.head."))
    )
    assert all(grads[n] for n in grads if n.startswith(("branches.b1.", "branches.shared.")))
    model.zero_grad(set_to_none=True)
    model.loss(make_batch())[0].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_parameter_groups() -> None:
    model = SPG(head_lr_mult=10.0, **TINY)
    groups = model.parameter_groups()
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in model.parameters())
    backbone = {id(p) for p in model.backbone.parameters()}
    for g in groups:
        in_backbone = {id(p) for p in g["params"]} <= backbone
        assert g["lr"] == pytest.approx(0.1 * 4 / 256 * (1.0 if in_backbone else 10.0))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"spg_threshold_1l": 0.8}, "spg_threshold_1"),
        ({"spg_threshold_2h": 1.5}, "spg_threshold_2"),
        ({"spg_threshold_3l": -0.1}, "spg_threshold_3"),
        ({"branch_layers": (-3, 8)}, "branch_layers"),
        ({"head_channels": 1}, "head_channels"),
        ({"min_foreground": -1}, "min_foreground"),
        ({"fallback_ratio": 0.0}, "fallback_ratio"),
        ({"aux_weight": -1.0}, "aux_weight"),
        ({"mixer": CutMix(seed=0)}, "mixer"),
        ({"multilabel": True}, "multilabel"),
        ({"backbone": Backbone(nn.Conv2d(3, 8, 1), out_channels=8, stride=1)}, "backbone"),
    ],
)
def test_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SPG(**{**TINY, **kwargs})


# ---------------------------------------------------------------------------------- training
def test_training_step_logs_terms_and_checkpoint_round_trips(tiny_datamodule, tmp_path) -> None:
    torch.manual_seed(0)
    model = SPG(**TINY)
    trainer = one_step_trainer(tmp_path, val_batches=1, checkpoint_dir=tmp_path / "ckpt")
    before = [p.detach().clone() for p in model.branches.parameters()]
    trainer.fit(model, datamodule=tiny_datamodule)
    metrics = trainer.callback_metrics
    for name in ("train/loss", "train/cls", "train/spg_b2", "train/spg_b1", "train/spg_c", "val/MaxBoxAccV2"):
        assert torch.isfinite(metrics[name]), name
    assert all(metrics[f"train/{n}"] > 0 for n in ("spg_b2", "spg_b1", "spg_c"))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.branches.parameters(), strict=True))
    path = tmp_path / "ckpt" / "last.ckpt"
    assert checkpoint_method(path) == "wsol.methods.spg.SPG"
    restored = load_checkpoint(path)
    assert type(restored) is SPG and not restored.training and restored.hparams.spg_threshold_1l == 0.01
    x = make_batch()["image"]
    model.eval()
    with torch.no_grad():
        assert torch.equal(restored.cams(x), model.cams(x))
        assert torch.equal(restored.spg_forward(x)[1], model.spg_forward(x)[1])
