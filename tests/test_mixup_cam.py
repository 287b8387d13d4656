"""Tests of Mixup-CAM: its two regularizers on hand-computed tensors, the loss wiring, and smoke training."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wsol.augment import CutMix, FMix, MixUp
from wsol.methods.mixup_cam import MixUpCAM, concentration_loss, prediction_entropy

# Small maps at 32 px: ResNet-10 with a stride-1 stem, timm ResNet-18 dilated to stride 8.
BACKBONES = {"resnet10": {"stem_stride": 1}, "timm:resnet18": {"output_stride": 8}}


def h(p: float) -> float:
    """Binary entropy in nats."""
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_entropy_hand_computed() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    # softmax: uniform over 2 classes -> ln 2; (3/4, 1/4) -> H(0.75)
    assert prediction_entropy(logits, multilabel=False).item() == pytest.approx((math.log(2) + h(0.75)) / 2)
    # sigmoid: p = 1/2, 1/2, 3/4, 1/2 -> class-wise binary entropies, averaged
    expected = (3 * math.log(2) + h(0.75)) / 4
    assert prediction_entropy(logits, multilabel=True).item() == pytest.approx(expected)


@pytest.mark.parametrize("multilabel", [False, True])
def test_entropy_acts_on_predictions(multilabel: bool) -> None:
    # The re-implementation's term was computed on the targets (zero gradient); this one must move logits.
    logits = torch.tensor([[0.3, -0.2, 1.0]], requires_grad=True)
    ent = prediction_entropy(logits, multilabel)
    (grad,) = torch.autograd.grad(ent, logits)
    assert grad.abs().sum() > 1e-3
    # A small step against the gradient lowers the entropy (it is minimised).
    assert prediction_entropy(logits.detach() - 0.1 * grad, multilabel) < ent.detach()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-200, 200), min_size=2, max_size=6), st.booleans())
def test_entropy_bounded_and_finite(values: list[float], multilabel: bool) -> None:
    logits = torch.tensor([values], requires_grad=True)
    ent = prediction_entropy(logits, multilabel)
    ent.backward()
    bound = math.log(2) if multilabel else math.log(len(values))
    assert -1e-6 <= ent.item() <= bound + 1e-6
    assert torch.isfinite(logits.grad).all()


def test_concentration_hand_computed() -> None:
    eps = 1e-12
    # 1 x 4 map, mass on columns 0 and 3 (centres x = -0.75 and 0.75): variance 0.75^2.
    cams = torch.tensor([[[[2.0, 0.0, -1.0, 2.0]]]])
    assert concentration_loss(cams, torch.ones(1, 1), eps).item() == pytest.approx(0.5625, rel=1e-5)
    # A single hot pixel has no spread.
    one = torch.zeros(1, 1, 3, 3)
    one[0, 0, 2, 1] = 5.0
    assert concentration_loss(one, torch.ones(1, 1), eps).item() == pytest.approx(0.0, abs=1e-6)
    # A uniform n x n map: per axis, the variance of n equispaced centres in [-1, 1] is (1 - 1/n^2) / 3.
    flat = torch.ones(1, 1, 4, 4)
    assert concentration_loss(flat, torch.ones(1, 1), eps).item() == pytest.approx(2 * (1 - 1 / 16) / 3, rel=1e-5)


def test_concentration_weights_classes_and_averages_images() -> None:
    eps = 1e-12
    spread = torch.tensor([[2.0, 0.0, 0.0, 2.0]])  # variance 0.5625
    cams = torch.stack([torch.stack([spread, spread]), torch.stack([spread, spread])])  # (2, 2, 1, 4)
    weights = torch.tensor([[0.3, 0.0], [1.0, 0.7]])  # mixed targets: absent classes weigh 0
    expected = 0.5625 * (0.3 + 1.7) / 2
    assert concentration_loss(cams, weights, eps).item() == pytest.approx(expected, rel=1e-5)


def test_concentration_gradient_pulls_mass_to_the_centre() -> None:
    cams = torch.tensor([[[[1.0, 3.0, 3.0, 1.0]]]], requires_grad=True)
    concentration_loss(cams, torch.ones(1, 1)).backward()
    grad = cams.grad.flatten()
    assert grad[0] > 0 and grad[3] > 0  # lowering the outer pixels lowers the spread
    assert grad[1] < 0 and grad[2] < 0


def make_batch(b: int = 4, k: int = 3, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(b) % k
    return {"image": torch.randn(b, 3, size, size, generator=g), "target": torch.eye(k)[labels], "label": labels}


def test_default_mixer_is_mixup_alpha_02_and_custom_kept() -> None:
    model = MixUpCAM(num_classes=3, batch_size=4)
    assert isinstance(model.mixer, MixUp) and model.mixer.alpha == 0.2
    fmix = FMix(seed=0)
    assert MixUpCAM(num_classes=3, batch_size=4, mixer=fmix).mixer is fmix
    assert model.hparams.ent_weight == 0.02 and model.hparams.con_weight == 2e-4
    with pytest.raises(ValueError):
        MixUpCAM(num_classes=3, ent_weight=-1.0)


@pytest.mark.parametrize("multilabel", [False, True])
def test_loss_is_the_weighted_sum_on_mixed_images(multilabel: bool) -> None:
    torch.manual_seed(0)
    model = MixUpCAM(num_classes=3, multilabel=multilabel, mixer=CutMix(seed=1), batch_size=4, ent_weight=0.5)
    model.eval()  # BatchNorm in eval: the same images give the same outputs
    batch = make_batch()
    total, terms = model.loss(batch)
    assert total.item() == pytest.approx((terms["cls"] + 0.5 * terms["ent"] + 2e-4 * terms["con"]).item(), rel=1e-6)
    mixed = CutMix(seed=1)(batch["image"], batch["target"].float())
    logits, cams = model.forward_with_cams(mixed.images)
    assert terms["cls"].item() == pytest.approx(model.classification_loss(logits, mixed.targets).item(), rel=1e-5)
    assert terms["ent"].item() == pytest.approx(prediction_entropy(logits, multilabel).item(), rel=1e-5)
    assert terms["con"].item() == pytest.approx(concentration_loss(cams, mixed.targets).item(), rel=1e-5)


def test_unmixed_ablation_reduces_to_cam_plus_regularizers() -> None:
    model = MixUpCAM(num_classes=3, mixer=MixUp(prob=0.0), batch_size=4, ent_weight=0.0, con_weight=0.0)
    model.eval()
    batch = make_batch()
    total, _ = model.loss(batch)
    expected = model.classification_loss(model(batch["image"]), batch["target"])
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)


def test_entropy_term_reaches_the_network() -> None:
    model = MixUpCAM(num_classes=3, batch_size=4, mixer=MixUp(seed=0))
    _, terms = model.loss(make_batch())
    terms["ent"].backward()
    assert model.head.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("mixer", [None, "cutmix"])
def test_fast_dev_run(tiny_datamodule, backbone: str, mixer: str | None) -> None:
    model = MixUpCAM(
        backbone=backbone,
        backbone_kwargs=BACKBONES[backbone],
        num_classes=3,
        batch_size=4,
        mixer=CutMix(seed=0) if mixer else None,
    )
    trainer = pl.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=tiny_datamodule)
    for name in ("train/loss", "train/cls", "train/ent", "train/con"):
        assert torch.isfinite(trainer.callback_metrics[name])
    assert trainer.callback_metrics["train/con"] > 0  # 4 x 4 maps: the spread is not trivially zero


def test_fast_dev_run_multilabel() -> None:
    g = torch.Generator().manual_seed(0)
    data = [
        {"image": torch.randn(3, 32, 32, generator=g), "target": (torch.rand(4, generator=g) > 0.5).float()}
        for _ in range(8)
    ]
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    model = MixUpCAM(num_classes=4, multilabel=True, batch_size=4, backbone_kwargs={"stem_stride": 1})
    trainer = pl.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=loader)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert "val/loss" in trainer.callback_metrics
