"""Tests of C2AM: the contrast terms and rank weights by hand, the border rule, the maps, training and checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import one_step_trainer
from torch import nn

from wsol.augment import CutMix
from wsol.methods import C2AM, load_checkpoint, load_model
from wsol.methods.c2am import negative_loss, positive_loss, rank_weights, region_features
from wsol.models import Backbone, C2AMNet
from wsol.models.c2am_net import border_excess

EPS = 5e-4


def identity_c2am(**kwargs) -> C2AM:
    """C2AM over an identity backbone whose raw activation logit is the image's channel 0 (BatchNorm in eval mode at
    its initial statistics, with eps 0, is the identity)."""
    model = C2AM(backbone=Backbone(nn.Identity(), out_channels=3, stride=1), num_classes=2, batch_size=2, **kwargs)
    with torch.no_grad():
        conv = model.net.activation_head[0]
        conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
        conv.bias.zero_()
    model.net.activation_head[1].eps = 0.0
    return model.eval()


def bright_border(n: int = 4) -> torch.Tensor:
    """A ``(1, 3, n, n)`` image whose channel 0 is 2 on the border and -2 inside (channels 1, 2 zero)."""
    image = torch.zeros(1, 3, n, n)
    image[0, 0] = 2.0
    image[0, 0, 1:-1, 1:-1] = -2.0
    return image


# ------------------------------------------------------------------------------------ contrast terms
def test_rank_weights_hand_computed() -> None:
    s = torch.tensor([[1.0, 0.2, 0.9, 0.5], [0.2, 1.0, 0.3, 0.1], [0.9, 0.3, 1.0, 0.4], [0.5, 0.1, 0.4, 1.0]])
    e1, e2 = math.exp(-1.0), math.exp(-2.0)
    expected = torch.tensor([[0, e2, 1, e1], [e1, 0, 1, e2], [1, e2, 0, e1], [1, e2, e1, 0]])
    torch.testing.assert_close(rank_weights(s, 1.0), expected)
    torch.testing.assert_close(rank_weights(s, 0.0), 1.0 - torch.eye(4))


def test_identical_foregrounds_give_the_minimal_pull_loss() -> None:
    same = torch.tensor([[1.0, 2.0, 0.5]]).repeat(5, 1) * torch.tensor([[1.0], [2.0], [0.5], [3.0], [1.0]])
    assert positive_loss(same, 0.25).item() == pytest.approx(0.0, abs=1e-6)  # cosines of 1, up to rounding
    spread = torch.rand(5, 3, generator=torch.Generator().manual_seed(0))
    assert positive_loss(spread, 0.25).item() > 0.0
    assert positive_loss(same[:1], 0.25).item() == 0.0  # one image: no pair


def test_pull_loss_hand_computed() -> None:
    # Two images at 60 degrees: s = 0.5, each one's only partner has rank 0 (weight 1): -log 0.5.
    v = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    torch.testing.assert_close(positive_loss(v, 0.25), torch.tensor(math.log(2.0)))
    # Three images: row 0 sees s = 0.5 (rank 0) and 0 (rank 1, clamped to eps), and so on.
    v = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.0, 1.0]])
    a, w1 = 0.5, math.exp(-0.5)
    s01, s12 = 0.5, math.sqrt(3) / 2
    total = (math.log(s01) + w1 * math.log(EPS)) + (math.log(s12) + w1 * math.log(s01))
    total += math.log(s12) + w1 * math.log(EPS)
    torch.testing.assert_close(positive_loss(v, a), torch.tensor(-total / 6))


def test_push_loss_hand_computed() -> None:
    eye = torch.eye(4)
    assert negative_loss(eye, eye[[1, 2, 3, 0]]).item() == pytest.approx(-4 * math.log(EPS) / 16, rel=1e-5)
    fg = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    bg = torch.tensor([[0.0, 3.0], [1.0, 1.0]])  # cos 0 and 1/sqrt(2) with both foregrounds
    expected = -2 * math.log(1 - 1 / math.sqrt(2)) / 4
    torch.testing.assert_close(negative_loss(fg, bg), torch.tensor(expected))


def test_region_features_hand_computed() -> None:
    features = torch.arange(8, dtype=torch.float32).view(1, 2, 2, 2)  # channel 0: 0..3, channel 1: 4..7
    activation = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
    fg, bg = region_features(features, activation)
    torch.testing.assert_close(fg, torch.tensor([[(0 + 1.0) / 4, (4 + 3.0) / 4]]))
    torch.testing.assert_close(bg, torch.tensor([[(1 + 1.0 + 3) / 4, (5 + 3.0 + 7) / 4]]))
    with pytest.raises(ValueError, match="does not match"):
        region_features(features, activation[:, :1])


# --------------------------------------------------------------------------------------- polarity
def test_border_excess_hand_computed() -> None:
    maps = torch.zeros(2, 4, 4)
    maps[0, 1:3, 1:3] = 1.0  # bright centre: border 0, mean 4/16
    maps[1] = 1.0 - maps[0]  # bright border: 1 - 12/16
    torch.testing.assert_close(border_excess(maps), torch.tensor([-0.25, 0.25]))
    assert border_excess(torch.rand(3, 2, 2)).abs().max() == 0  # every position is a border position
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        border_excess(torch.zeros(4, 4))


def test_polarity_rule_flips_a_map_whose_border_is_bright() -> None:
    model = identity_c2am()
    image = bright_border()
    raw = image[0, 0]
    # Untrained statistic 0: the map is the raw activation logit.
    torch.testing.assert_close(model.cams(image, [1])[0], raw)
    excess = model.net.fix_polarity([image])
    high, low = torch.sigmoid(torch.tensor(2.0)).item(), torch.sigmoid(torch.tensor(-2.0)).item()
    assert excess == pytest.approx(high - (12 * high + 4 * low) / 16)  # border mean minus map mean
    assert excess > 0 and model.net.polarity == -1
    for maps in (model.cams(image, [0])[0], model.net.cams(image, [1])[0], model.forward_with_cams(image)[1][0, 1]):
        torch.testing.assert_close(maps, -raw)  # flipped: high inside, where the object is
    # A bright centre keeps the map as it is.
    assert model.net.fix_polarity([-image]) < 0 and model.net.polarity == 1
    torch.testing.assert_close(model.cams(-image, [0])[0], -raw)
    with pytest.raises(ValueError, match="at least one image"):
        model.net.fix_polarity([])


def test_training_steps_average_the_border_statistic() -> None:
    model = identity_c2am(polarity_momentum=0.5).train()
    model.net.activation_head[1].eval()  # keep BatchNorm the identity
    image = bright_border().repeat(2, 1, 1, 1)
    batch = {"image": image, "target": torch.eye(2)}
    stat = float(border_excess(torch.sigmoid(image[:, 0])).mean())
    model.loss(batch)
    assert model.net.border_excess.item() == pytest.approx(0.5 * stat)
    terms = model.loss(batch)[1]
    assert model.net.border_excess.item() == pytest.approx(0.75 * stat) == terms["border"].item()
    model.eval().loss(batch)  # scoring a batch outside training leaves the statistic alone
    assert model.net.border_excess.item() == pytest.approx(0.75 * stat)


# ----------------------------------------------------------------------------------- the module
def test_loss_is_the_classification_plus_the_weighted_contrast() -> None:
    torch.manual_seed(0)
    model = C2AM(backbone="resnet10", backbone_kwargs={"stem_stride": 2, "width": 8}, num_classes=3, lambda_c2am=0.5)
    batch = {"image": torch.randn(4, 3, 32, 32), "target": torch.eye(3)[[0, 1, 2, 0]]}
    total, terms = model.loss(batch)
    torch.testing.assert_close(total, terms["cls"] + 0.5 * (terms["neg"] + terms["pos_fg"] + terms["pos_bg"]))
    total.backward()
    conv = model.net.activation_head[0]
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0  # the contrast trains the head
    assert next(model.backbone.parameters()).grad.abs().sum() > 0  # and the trunk


def test_class_cams_are_the_cam_heads_maps() -> None:
    torch.manual_seed(0)
    model = C2AM(backbone="resnet10", backbone_kwargs={"stem_stride": 2, "width": 8}, num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.head.class_maps(model.features(x))
        torch.testing.assert_close(model.class_cams(x), expected)
        torch.testing.assert_close(model.class_cams(x, torch.tensor([2, 0])), expected[[0, 1], [2, 0]])
        logits, maps = model.forward_with_cams(x)
        torch.testing.assert_close(logits, expected.mean(dim=(2, 3)))
        assert torch.equal(maps[:, 0], maps[:, 2])  # one class-agnostic map for every class


def test_projection_trains_with_the_heads() -> None:
    model = C2AM(backbone="resnet10", backbone_kwargs={"stem_stride": 2, "width": 8}, num_classes=3, projection_dim=4)
    assert model.head_modules() == (model.net.head, model.net.activation_head, model.projection)
    assert not any(name.startswith("net.projection") for name, _ in model.named_parameters())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lambda_c2am": 0.0}, "lambda_c2am"),
        ({"lambda_c2am": float("nan")}, "lambda_c2am"),
        ({"alpha": -1.0}, "alpha"),
        ({"projection_dim": 0}, "projection_dim"),
        ({"polarity_momentum": 1.0}, "polarity_momentum"),
        ({"mixer": CutMix()}, "mixer"),
    ],
)
def test_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        C2AM(backbone="resnet10", backbone_kwargs={"width": 8}, num_classes=3, **kwargs)


@pytest.mark.slow  # about 8 s on 2 busy cores
def test_training_step_and_checkpoint_round_trip(tiny_datamodule, tmp_path) -> None:
    torch.manual_seed(0)
    # 4x4 maps at 32 px (last stage at stride 1), so the border rule has an inside.
    model = C2AM(backbone="resnet10", backbone_kwargs={"stem_stride": 2, "width": 8, "last_stride": 1}, num_classes=3)
    before = model.net.activation_head[0].weight.detach().clone()
    trainer = one_step_trainer(tmp_path)
    trainer.fit(model, datamodule=tiny_datamodule)
    assert not torch.equal(before, model.net.activation_head[0].weight)
    assert model.net.border_excess.item() != 0.0  # one step: 0.1 of the batch's statistic
    path = tmp_path / "c2am.ckpt"
    trainer.save_checkpoint(path)
    net = load_model(path)
    assert isinstance(net, C2AMNet) and net.border_excess.item() == model.net.border_excess.item()
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.cams(x, [0, 2]), model.cams(x, torch.tensor([0, 2])), rtol=0, atol=0)
        torch.testing.assert_close(load_checkpoint(path).class_cams(x), model.class_cams(x), rtol=0, atol=0)
