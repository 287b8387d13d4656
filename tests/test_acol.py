"""Tests of ACoL: the erasing mask and fused map on hand-made maps, wiring, gradients and a real training step."""

from __future__ import annotations

import pytest
import torch
from conftest import one_step_trainer

from wsol.augment import CutMix
from wsol.methods.acol import ACoL, acol_keep_mask, combine_maps, minmax_normalize
from wsol.methods.checkpoint import checkpoint_method, load_checkpoint

TINY = {"backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 8}, "num_classes": 3, "batch_size": 4}


def make_batch(b: int = 4, k: int = 3, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(b) % k
    return {"image": torch.randn(b, 3, size, size, generator=g), "target": torch.eye(k)[labels], "label": labels}


# ------------------------------------------------------------------------------ hand-made maps
def test_keep_mask_hand_computed() -> None:
    cam = torch.arange(9.0).view(1, 1, 3, 3) + 2.0  # min-max normalised: [0, 1/8, ..., 8/8]
    # 0.7: erased where >= 0.7, i.e. 6/8, 7/8, 8/8 (the bottom row); 5/8 = 0.625 is kept.
    expected = torch.tensor([[[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]])
    torch.testing.assert_close(acol_keep_mask(cam, torch.tensor([0]), 0.7), expected)
    # The comparison is >=: at exactly 5/8 the 5/8 pixel goes too.
    expected[0, 0, 1, 2] = 0.0
    torch.testing.assert_close(acol_keep_mask(cam, torch.tensor([0]), 0.625), expected)
    # The label picks the channel: channel 1 (reversed) erases the top row instead.
    two = torch.cat([cam, cam.flip(-1).flip(-2)], dim=1)
    top_row = torch.tensor([[[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]]])
    torch.testing.assert_close(acol_keep_mask(two, torch.tensor([1]), 0.7), top_row)


def test_keep_mask_is_detached_and_constant_maps_erase_nothing() -> None:
    cam = torch.randn(2, 3, 4, 4, requires_grad=True)
    assert not acol_keep_mask(cam, torch.tensor([0, 2]), 0.5).requires_grad
    flat = torch.full((1, 1, 3, 3), 4.0)
    torch.testing.assert_close(minmax_normalize(flat), torch.zeros_like(flat))  # the benchmark gives NaN here
    assert acol_keep_mask(flat, torch.tensor([0]), 0.7).eq(1).all()


def test_combined_map_hand_computed() -> None:
    a = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])  # -> [0, .25, .5, 1]
    b = torch.tensor([[[[3.0, 1.0], [1.0, 1.0]]]])  # -> [1, 0, 0, 0]
    torch.testing.assert_close(combine_maps(a, b), torch.tensor([[[[1.0, 0.25], [0.5, 1.0]]]]))


# ----------------------------------------------------------------------------------- wiring
def test_forward_with_cams_uses_a_logits_and_predicted_class_erasing() -> None:
    torch.manual_seed(0)
    model = ACoL(**TINY).eval()
    x = make_batch()["image"]
    with torch.no_grad():
        logits, maps = model.forward_with_cams(x)
        logits_a, logits_b, maps_a, maps_b = model.net.acol_forward(x)
        torch.testing.assert_close(logits, logits_a)
        torch.testing.assert_close(logits, model(x))  # the base forward runs classifier A
        assert not torch.allclose(logits_a, logits_b)
        torch.testing.assert_close(maps, combine_maps(maps_a, maps_b))
        # Erasing with A's prediction vs with given classes: B's maps differ where the classes differ.
        other = (logits_a.argmax(dim=1) + 1) % 3
        _, _, _, maps_b_other = model.net.acol_forward(x, other)
        assert not torch.allclose(maps_b, maps_b_other)
        rows = torch.arange(4)
        torch.testing.assert_close(model.cams(x, other), combine_maps(maps_a, maps_b_other)[rows, other])
        torch.testing.assert_close(model.cams(x), maps)
    with pytest.raises(ValueError, match="class indices"):
        model.cams(x, torch.tensor([0, 1, 2, 3]))


def test_loss_terms_and_parameter_groups() -> None:
    torch.manual_seed(0)
    model = ACoL(head_lr_mult=10.0, head_channels=16, **TINY)
    total, terms = model.loss(make_batch())
    assert set(terms) == {"cls", "cls_b"}
    assert total.item() == pytest.approx((terms["cls"] + terms["cls_b"]).item())
    assert model.head.layers[0].out_channels == 16 and model.net.classifier_b.layers[2].out_channels == 16
    assert model.head.weight.shape == (3, 16, 1, 1)
    groups = model.parameter_groups()
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # every parameter exactly once
    new = {id(p) for m in (model.head, model.net.classifier_b) for p in m.parameters()}
    base_lr = 0.1 * 4 / 256
    for g in groups:
        is_new = {id(p) for p in g["params"]} <= new
        assert g["lr"] == pytest.approx(base_lr * (10.0 if is_new else 1.0))
    assert ACoL(**TINY).head.layers[0].out_channels == 64  # default: the backbone's 8 * width channels


def test_gradients_reach_backbone_and_both_classifiers() -> None:
    torch.manual_seed(0)
    model = ACoL(**TINY)
    _, terms = model.loss(make_batch())
    terms["cls_b"].backward()  # B alone: through the erased features into the backbone
    for name, p in model.named_parameters():
        if name.startswith("net.head."):
            assert p.grad is None, name  # the erasing mask is detached: B's loss never reaches A
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    model.zero_grad(set_to_none=True)
    model.loss(make_batch())[0].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"acol_threshold": 0.0}, "acol_threshold"),
        ({"acol_threshold": 1.5}, "acol_threshold"),
        ({"head_channels": 0}, "head_channels"),
        ({"mixer": CutMix(seed=0)}, "mixer"),
        ({"multilabel": True}, "multilabel"),
    ],
)
def test_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ACoL(**{**TINY, **kwargs})


# ---------------------------------------------------------------------------------- training
def test_training_step_logs_terms_and_checkpoint_round_trips(tiny_datamodule, tmp_path) -> None:
    torch.manual_seed(0)
    model = ACoL(**TINY)
    trainer = one_step_trainer(tmp_path, val_batches=1, checkpoint_dir=tmp_path / "ckpt")
    before = [p.detach().clone() for p in model.net.classifier_b.parameters()]
    trainer.fit(model, datamodule=tiny_datamodule)
    metrics = trainer.callback_metrics
    for name in ("train/loss", "train/cls", "train/cls_b", "val/loss", "val/MaxBoxAccV2"):
        assert torch.isfinite(metrics[name]), name
    assert metrics["train/loss"].item() == pytest.approx((metrics["train/cls"] + metrics["train/cls_b"]).item())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.net.classifier_b.parameters(), strict=True))
    path = tmp_path / "ckpt" / "last.ckpt"
    assert checkpoint_method(path) == "wsol.methods.acol.ACoL"
    restored = load_checkpoint(path)
    assert type(restored) is ACoL and not restored.training and restored.hparams.acol_threshold == 0.7
    x = make_batch()["image"]
    model.eval()
    with torch.no_grad():
        assert torch.equal(restored.cams(x), model.cams(x))
        assert torch.equal(restored(x), model(x))
