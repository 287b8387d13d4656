"""Tests of the few-shot fully supervised baseline: the mask rule, the loss by hand, wiring and training."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from conftest import one_step_trainer
from torch import nn

from wsol.augment import CutMix
from wsol.methods.checkpoint import checkpoint_method, load_checkpoint
from wsol.methods.fsl import FSL, boxes_to_mask
from wsol.models import Backbone

SMALL = {"backbone": "resnet10", "backbone_kwargs": {"stem_stride": 1, "width": 8}}


def identity_fsl(**kwargs) -> FSL:
    """FSL over an identity backbone whose foreground logit is the image's channel 0 and whose logits are 0."""
    model = FSL(backbone=Backbone(nn.Identity(), out_channels=3, stride=1), num_classes=4, batch_size=2, **kwargs)
    with torch.no_grad():
        model.net.fg_head.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
        model.net.fg_head.bias.zero_()
        model.head.conv.weight.zero_()
        model.head.conv.bias.zero_()
    return model


def box_batch(images: torch.Tensor, boxes: list[list[list[float]]], labels: list[int], k: int = 4) -> dict:
    return {
        "image": images,
        "target": torch.eye(k)[labels],
        "label": torch.tensor(labels),
        "boxes": [torch.tensor(b, dtype=torch.float32).reshape(-1, 4) for b in boxes],
        "image_id": [f"img{i}" for i in range(len(labels))],
    }


# ------------------------------------------------------------------------------------------ mask
def test_boxes_to_mask_overlapping_inclusive_boxes() -> None:
    boxes = torch.tensor([[1.0, 0.0, 2.0, 1.0], [2.0, 1.0, 4.0, 3.0]])  # overlap at pixel (x=2, y=1)
    expected = torch.tensor(
        [
            [0, 1, 1, 0, 0, 0],
            [0, 1, 1, 1, 1, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 0],
        ],
        dtype=torch.float32,
    )
    torch.testing.assert_close(boxes_to_mask(boxes, 5, 6), expected, rtol=0, atol=0)


def test_boxes_to_mask_border_single_pixel_clipping_and_fractions() -> None:
    touching = boxes_to_mask(torch.tensor([[3.0, 2.0, 5.0, 4.0]]), 5, 6)  # ends on the last row and column
    assert touching.sum() == 9 and touching[2:, 3:].eq(1).all() and touching[4, 5] == 1
    one = boxes_to_mask(torch.tensor([[0.0, 0.0, 0.0, 0.0]]), 5, 6)  # x0 == x1: one pixel, inclusive
    assert one.sum() == 1 and one[0, 0] == 1
    clipped = boxes_to_mask(torch.tensor([[-3.0, 3.0, 1.0, 9.0]]), 5, 6)  # columns 0-1, rows 3-4
    assert clipped.sum() == 4 and clipped[3:, :2].eq(1).all()
    # Fractional (augmented) boxes: pixel centres u with x0 - 1/2 <= u < x1 + 1/2.
    # Columns 0.9 <= u < 3.9 and rows -0.1 <= v < 1.7: columns 1-3 of rows 0-1.
    frac = boxes_to_mask(torch.tensor([[1.4, 0.4, 3.4, 1.2]]), 5, 6)
    assert frac.sum() == 6 and frac[:2, 1:4].eq(1).all()
    # A top edge at y0 = 0.6 leaves row 0 out: 0 < y0 - 1/2.
    assert boxes_to_mask(torch.tensor([[1.4, 0.6, 3.4, 1.2]]), 5, 6)[0].sum() == 0
    assert boxes_to_mask(torch.zeros(0, 4), 5, 6).sum() == 0
    assert boxes_to_mask(torch.tensor([[7.0, 0.0, 9.0, 2.0]]), 5, 6).sum() == 0  # fully outside


@pytest.mark.parametrize(
    ("boxes", "height", "width", "match"),
    [
        (torch.tensor([[3.0, 0.0, 2.0, 1.0]]), 5, 6, "x0 <= x1"),
        (torch.tensor([[0.0, 2.0, 1.0, 1.0]]), 5, 6, "y0 <= y1"),
        (torch.tensor([0.0, 0.0, 1.0, 1.0]), 5, 6, "boxes must have shape"),
        (torch.tensor([[0.0, 0.0, float("nan"), 1.0]]), 5, 6, "finite"),
        (torch.tensor([[0.0, 0.0, 1.0, 1.0]]), 0, 6, "height and width"),
    ],
)
def test_boxes_to_mask_rejects_bad_input(boxes, height, width, match) -> None:
    with pytest.raises(ValueError, match=match):
        boxes_to_mask(boxes, height, width)


# ------------------------------------------------------------------------------------------ loss
def test_loss_with_a_constant_foreground_logit() -> None:
    model = identity_fsl(fg_weight=2.0, cls_weight=0.5)
    c = math.log(3.0)  # sigmoid(c) = 3/4
    images = torch.full((2, 3, 4, 4), c)
    # Image 0: 4 of 16 pixels; image 1: two overlapping boxes covering 6 + 4 - 2 = 8 pixels.
    batch = box_batch(images, [[[0, 0, 1, 1]], [[0, 0, 2, 1], [1, 1, 2, 2]]], [1, 3])
    total, terms = model.loss(batch)
    fg_fraction = (4 + 8) / 32
    fg = fg_fraction * -math.log(0.75) + (1 - fg_fraction) * -math.log(0.25)
    assert terms["fg"].item() == pytest.approx(fg, rel=1e-6)
    assert terms["cls"].item() == pytest.approx(math.log(4), rel=1e-6)  # zero logits over K = 4
    assert total.item() == pytest.approx(2.0 * fg + 0.5 * math.log(4), rel=1e-6)
    assert set(terms) == {"fg", "cls"}


def test_loss_mask_is_aligned_with_the_pixels() -> None:
    model = identity_fsl()
    images = torch.full((1, 3, 5, 6), -2.0)
    images[0, 0, 1:4, 2:5] = 2.0  # logit +2 exactly on the box x 2..4, y 1..3
    batch = box_batch(images, [[[2, 1, 4, 3]]], [0])
    assert model.loss(batch)[1]["fg"].item() == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-6)
    # Shifting the box by one column puts 3 foreground and 3 background pixels on the wrong side: 6 of 30.
    shifted = box_batch(images, [[[3, 1, 5, 3]]], [0])
    expected = (24 * math.log1p(math.exp(-2.0)) + 6 * math.log1p(math.exp(2.0))) / 30
    assert model.loss(shifted)[1]["fg"].item() == pytest.approx(expected, rel=1e-6)


def test_foreground_logits_are_upsampled_bilinearly() -> None:
    # A stride-2 average-pool backbone: 2x2 feature maps of a 4x4 input, foreground logit = channel 0.
    backbone = Backbone(nn.AvgPool2d(2), out_channels=3, stride=2)
    model = FSL(backbone=backbone, num_classes=2, batch_size=1, cls_weight=0.0)
    with torch.no_grad():
        model.net.fg_head.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
        model.net.fg_head.bias.zero_()
    images = torch.zeros(1, 3, 4, 4)
    images[0, 0, :, 2:] = 4.0  # features [[0, 4], [0, 4]]
    # Bilinear (half-pixel centres) columns: 0, 1, 3, 4, the same on every row.
    columns = torch.tensor([0.0, 1.0, 3.0, 4.0])
    batch = box_batch(images, [[[2, 0, 3, 3]]], [0], k=2)
    expected = torch.where(columns >= 2, nn.functional.softplus(-columns), nn.functional.softplus(columns)).mean()
    assert model.loss(batch)[1]["fg"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_cls_weight_zero_leaves_the_classifier_without_gradient() -> None:
    model = identity_fsl(cls_weight=0.0)
    images = torch.randn(2, 3, 4, 4)
    total, terms = model.loss(box_batch(images, [[[0, 0, 1, 1]], [[2, 2, 3, 3]]], [0, 1]))
    total.backward()
    assert model.head.conv.weight.grad is None and model.net.fg_head.weight.grad is not None
    assert total.item() == pytest.approx(terms["fg"].item()) and terms["cls"].item() == pytest.approx(math.log(4))


def test_an_image_whose_crop_lost_every_box_is_background_and_a_batch_without_boxes_is_refused() -> None:
    model = identity_fsl()
    batch = box_batch(torch.zeros(2, 3, 4, 4), [[[0, 0, 1, 1]], []], [0, 1])
    masks = model.foreground_masks(batch)
    assert masks[1].sum() == 0 and masks[0].sum() == 4
    del batch["boxes"]
    with pytest.raises(ValueError, match="boxes"):
        model.loss(batch)


# ---------------------------------------------------------------------------------------- wiring
def test_arguments_are_validated() -> None:
    for kwargs, name in (
        ({"fg_weight": 0.0}, "fg_weight"),
        ({"fg_weight": float("nan")}, "fg_weight"),
        ({"cls_weight": -1.0}, "cls_weight"),
        ({"mixer": CutMix(seed=0)}, "mixer"),
    ):
        with pytest.raises(ValueError, match=name):
            FSL(num_classes=3, **kwargs)


def test_maps_are_the_foreground_logits_for_every_class() -> None:
    torch.manual_seed(0)
    model = FSL(num_classes=3, **SMALL).eval()
    x = torch.randn(2, 3, 32, 32)
    logits, maps = model.forward_with_cams(x)
    with torch.no_grad():
        fg = model.net.fg_head(model.features(x))
    assert maps.shape == (2, 3, 4, 4)
    for k in range(3):
        torch.testing.assert_close(maps[:, k], fg[:, 0])
    torch.testing.assert_close(logits, model(x))
    torch.testing.assert_close(model.cams(x, torch.tensor([2, 0])), fg[:, 0])


def test_parameter_groups_train_the_foreground_head() -> None:
    model = FSL(num_classes=3, batch_size=256, lr=0.1, head_lr_mult=10.0, weight_decay=1e-4, **SMALL)
    groups = model.parameter_groups()
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # every parameter exactly once
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert lr_of[id(model.net.fg_head.weight)] == (pytest.approx(1.0), 1e-4)
    assert lr_of[id(model.net.fg_head.bias)] == (pytest.approx(1.0), 0.0)
    assert lr_of[id(model.backbone.body[0].weight)] == (pytest.approx(0.1), 1e-4)


# -------------------------------------------------------------------------------------- training
def test_trainer_step_and_checkpoint_round_trip(tiny_datamodule, tmp_path) -> None:
    pl.seed_everything(0)
    model = FSL(num_classes=3, **SMALL)
    before = model.net.fg_head.weight.detach().clone()
    trainer = one_step_trainer(tmp_path, val_batches=1)
    trainer.fit(model, datamodule=tiny_datamodule)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/fg"]) and torch.isfinite(metrics["train/cls"])
    assert metrics["train/loss"].item() == pytest.approx((metrics["train/fg"] + metrics["train/cls"]).item())
    assert 0.0 <= metrics["val/MaxBoxAccV2"] <= 100.0
    assert not torch.equal(before, model.net.fg_head.weight)
    path = tmp_path / "fsl.ckpt"
    trainer.save_checkpoint(path)
    assert checkpoint_method(path) == "wsol.methods.fsl.FSL"
    restored = load_checkpoint(path)
    assert type(restored) is FSL and not restored.training
    assert restored.hparams.fg_weight == 1.0 and restored.hparams.cls_weight == 1.0
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(restored.cams(x), model.cams(x), rtol=0, atol=0)


def squares(n: int, size: int, generator: torch.Generator) -> dict:
    """Bright squares (side 8-14) on a dark noisy background; label = square size bucket."""
    images = 0.1 * torch.randn(n, 3, size, size, generator=generator) - 1.0
    boxes, labels = [], []
    for i in range(n):
        side = int(torch.randint(8, 15, (), generator=generator))
        x0, y0 = (int(v) for v in torch.randint(0, size - side + 1, (2,), generator=generator))
        images[i, :, y0 : y0 + side, x0 : x0 + side] += 2.0
        boxes.append([[x0, y0, x0 + side - 1, y0 + side - 1]])
        labels.append(int(side >= 11))
    return box_batch(images, boxes, labels, k=2)


@pytest.mark.slow
def test_training_decreases_the_foreground_loss() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = FSL(num_classes=2, optimizer="adamw", lr=3e-3, scale_lr=False, weight_decay=0.0, **SMALL)
    probe = squares(8, 32, g)
    with torch.no_grad():
        start = model.loss(probe)[1]["fg"].item()
    opt = torch.optim.AdamW(model.parameter_groups())
    for _ in range(20):
        opt.zero_grad()
        model.loss(squares(8, 32, g))[0].backward()
        opt.step()
    with torch.no_grad():
        end = model.loss(probe)[1]["fg"].item()
    assert end < 0.5 * start, (start, end)
