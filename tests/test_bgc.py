"""Tests of BGC: each loss term on a hand-computed 2x2 feature map, the warm-up switch, gradients and a real step."""

from __future__ import annotations

import pytest
import torch
from conftest import one_step_trainer

from wsol.augment import CutMix
from wsol.methods.bgc import (
    BGC,
    dropout_consistency_loss,
    masked_mean,
    norm_loss,
    normalized_feature_map,
    region_masks,
    similarity_loss,
    similarity_map,
)
from wsol.methods.cam import CAM
from wsol.methods.checkpoint import checkpoint_method, load_checkpoint

TINY = {"backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 8}, "num_classes": 3, "batch_size": 4}

# One image, C = 2, 2x2 positions: f = (4, 0), (0, 2) / (0.3, 0.4), (0, 1).
# Norms 4, 2 / 0.5, 1, so F = 1, 0.5 / 0.125, 0.25. Against w_0 = (2, 0): cos = 1, 0 / 0.6, 0.
FEATURES = torch.tensor([[[[4.0, 0.0], [0.3, 0.0]], [[0.0, 2.0], [0.4, 1.0]]]])
HEAD = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # class rows w_0, w_1
F_MAP = torch.tensor([[[1.0, 0.5], [0.125, 0.25]]])
S_MAP = torch.tensor([[[1.0, 0.0], [0.6, 0.0]]])


def make_batch(b: int = 4, k: int = 3, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(b) % k
    return {"image": torch.randn(b, 3, size, size, generator=g), "target": torch.eye(k)[labels], "label": labels}


def two_class_model(**kwargs) -> BGC:
    """A BGC whose 2-class head holds ``HEAD`` (the backbone is not used by ``localization_terms``)."""
    model = BGC(backbone="resnet10", backbone_kwargs={"width": 8}, num_classes=2, batch_size=1, **kwargs)
    model.head = type(model.head)(2, 2)
    with torch.no_grad():
        model.head.weight.copy_(HEAD[:, :, None, None])
    return model


# ----------------------------------------------------------------------------- hand-computed terms
def test_maps_hand_computed() -> None:
    torch.testing.assert_close(normalized_feature_map(FEATURES), F_MAP)
    torch.testing.assert_close(similarity_map(FEATURES, HEAD[[0]]), S_MAP)  # ||w_0|| = 2 does not matter
    torch.testing.assert_close(similarity_map(FEATURES, HEAD[[1]]), torch.tensor([[[0.0, 1.0], [0.8, 1.0]]]))
    # A zero feature vector has cosine 0 and an all-zero map F = 0, not NaN.
    zeros = torch.zeros(1, 2, 2, 2)
    assert similarity_map(zeros, HEAD[[0]]).eq(0).all() and normalized_feature_map(zeros).eq(0).all()


def test_similarity_loss_hand_computed() -> None:
    # Regions of F at (0.4, 0.2): fg = {1, 0.5}, bg = {0.125}; 0.25 is in neither.
    fg, bg = region_masks(F_MAP, 0.4, 0.2)
    assert fg.tolist() == [[[True, True], [False, False]]] and bg.tolist() == [[[False, False], [True, False]]]
    # mean_fg (1 - S) = mean(0, 1) = 0.5; mean_bg (1 + S) = 1.6.
    assert similarity_loss(S_MAP, fg, bg).item() == pytest.approx(2.1)


def test_norm_loss_hand_computed() -> None:
    # Regions of S (already in [0, 1]) at (0.4, 0.2): fg = {1, 0.6}, bg = the two zeros.
    fg, bg = region_masks(S_MAP, 0.4, 0.2)
    # mean_fg (1 - F) = mean(0, 0.875) = 0.4375; mean_bg F = mean(0.5, 0.25) = 0.375.
    assert norm_loss(F_MAP, fg, bg).item() == pytest.approx(0.8125)


def test_dropout_consistency_hand_computed() -> None:
    # tau 0.6 drops the peak (F = 1): the kept norms 2, 0.5, 1 renormalise by 2 to 1, 0.25, 0.5 against
    # F = 0.5, 0.125, 0.25: |diff| = 0.5, 0.125, 0.25, mean 0.875 / 3.
    assert dropout_consistency_loss(FEATURES, 0.6).item() == pytest.approx(0.875 / 3)
    # tau 0.4 also drops F = 0.5: kept 0.5, 1 -> 0.5, 1 against 0.125, 0.25: mean(0.375, 0.75).
    assert dropout_consistency_loss(FEATURES, 0.4).item() == pytest.approx(0.5625)
    # tau 1 drops nothing: the maps agree. A flat map (every norm equal) drops everything: no kept region.
    assert dropout_consistency_loss(FEATURES, 1.0).item() == 0.0
    assert dropout_consistency_loss(torch.ones(1, 2, 2, 2), 0.5).item() == 0.0


def test_masked_mean_averages_per_image_over_non_empty_regions() -> None:
    values = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[10.0, 20.0], [30.0, 40.0]]])
    first_row = torch.tensor([[True, True], [False, False]])
    # Image 0: mean(1, 2) = 1.5; image 1 keeps 10, 20, 30: mean 20; the images weigh the same, not the pixels.
    mask = torch.stack([first_row, torch.tensor([[True, True], [True, False]])])
    assert masked_mean(values, mask).item() == pytest.approx((1.5 + 20.0) / 2)
    # An image with an empty region is left out, not counted as 0; all empty gives 0.
    assert masked_mean(values, torch.stack([first_row, torch.zeros(2, 2, dtype=torch.bool)])).item() == 1.5
    assert masked_mean(values, torch.zeros(2, 2, 2, dtype=torch.bool)).item() == 0.0


def test_module_terms_use_the_target_class_row() -> None:
    model = two_class_model(tau_fg=0.4, tau_bg=0.2, tau_drop=0.6)
    terms = model.localization_terms(FEATURES, torch.tensor([0]))
    assert terms["sim"].item() == pytest.approx(2.1)
    assert terms["norm"].item() == pytest.approx(0.8125)
    assert terms["cons"].item() == pytest.approx(0.875 / 3)
    # Class 1: S = 0, 1 / 0.8, 1. fg of F is unchanged: mean(1 - 0, 1 - 1) + (1 + 0.8) = 2.3.
    # S min-max -> 0, 1 / 0.8, 1: fg = {1, 0.8, 1} (F 0.5, 0.125, 0.25), bg = {0} (F 1):
    # mean(0.5, 0.875, 0.75) + 1 = 1.708333.
    terms = model.localization_terms(FEATURES, torch.tensor([1]))
    assert terms["sim"].item() == pytest.approx(2.3)
    assert terms["norm"].item() == pytest.approx((0.5 + 0.875 + 0.75) / 3 + 1.0)


# ------------------------------------------------------------------------------------- wiring
def test_warmup_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = BGC(lambda_sim=0.5, lambda_norm=2.0, lambda_cons=3.0, warmup_epochs_loc=2, **TINY)
    batch = make_batch()
    monkeypatch.setattr(BGC, "current_epoch", property(lambda self: 1))
    total, terms = model.loss(batch)
    assert set(terms) == {"cls", "sim", "norm", "cons"}
    assert torch.equal(total, terms["cls"])  # classification only
    assert not any(terms[k].requires_grad for k in ("sim", "norm", "cons"))  # monitored, not trained
    assert all(terms[k].item() > 0 for k in ("sim", "norm", "cons"))
    monkeypatch.setattr(BGC, "current_epoch", property(lambda self: 2))
    total2, terms2 = model.loss(batch)
    expected = terms2["cls"] + 0.5 * terms2["sim"] + 2.0 * terms2["norm"] + 3.0 * terms2["cons"]
    assert total2.item() == pytest.approx(expected.item())
    assert total2.item() > total.item() + 0.1
    for k in ("cls", "sim", "norm", "cons"):  # same weights, same batch: same values either side of the switch
        assert terms2[k].item() == pytest.approx(terms[k].item())


def test_gradients_reach_the_backbone() -> None:
    torch.manual_seed(0)
    model = BGC(warmup_epochs_loc=0, **TINY)
    for name in ("sim", "norm", "cons"):
        model.zero_grad(set_to_none=True)
        model.loss(make_batch())[1][name].backward()
        grads = [p.grad for p in model.backbone.parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0, name
        # Only the direction term involves w_c; norm and consistency act on the features alone.
        head_grad = model.head.weight.grad
        assert bool(head_grad is not None and head_grad.abs().sum() > 0) is (name == "sim"), name


def test_inference_is_cam() -> None:
    torch.manual_seed(0)
    model = BGC(**TINY).eval()
    cam = CAM(**TINY).eval()
    cam.load_state_dict(model.state_dict())  # identical state dicts: BGC only changes training
    x = make_batch()["image"]
    with torch.no_grad():
        torch.testing.assert_close(model.cams(x), cam.cams(x))
        torch.testing.assert_close(model(x), cam(x))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lambda_sim": -1.0}, "lambda_sim"),
        ({"lambda_norm": float("nan")}, "lambda_norm"),
        ({"lambda_cons": True}, "lambda_cons"),
        ({"tau_fg": 1.5}, "tau_fg"),
        ({"tau_fg": 0.3, "tau_bg": 0.4}, "tau_bg"),
        ({"tau_bg": -0.1}, "tau_bg"),
        ({"tau_drop": 0.0}, "tau_drop"),
        ({"tau_drop": 1.2}, "tau_drop"),
        ({"warmup_epochs_loc": -1}, "warmup_epochs_loc"),
        ({"warmup_epochs_loc": 2.5}, "warmup_epochs_loc"),
        ({"mixer": CutMix(seed=0)}, "mixer"),
        ({"multilabel": True}, "multilabel"),
    ],
)
def test_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        BGC(**{**TINY, **kwargs})


# ---------------------------------------------------------------------------------- training
def test_training_step_and_checkpoint_round_trip(tiny_datamodule, tmp_path) -> None:
    torch.manual_seed(0)
    model = BGC(warmup_epochs_loc=0, **TINY)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    trainer = one_step_trainer(tmp_path, checkpoint_dir=tmp_path / "ckpt")
    trainer.fit(model, datamodule=tiny_datamodule)
    m = trainer.callback_metrics
    for name in ("train/loss", "train/cls", "train/sim", "train/norm", "train/cons"):
        assert torch.isfinite(m[name]), name
    expected = m["train/cls"] + m["train/sim"] + m["train/norm"] + m["train/cons"]
    assert m["train/loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters(), strict=True))
    path = tmp_path / "ckpt" / "last.ckpt"
    assert checkpoint_method(path) == "wsol.methods.bgc.BGC"
    restored = load_checkpoint(path)
    assert type(restored) is BGC and not restored.training
    assert restored.hparams.warmup_epochs_loc == 0 and restored.hparams.tau_drop == 0.8
    x = make_batch()["image"]
    model.eval()
    with torch.no_grad():
        assert torch.equal(restored.cams(x), model.cams(x))
