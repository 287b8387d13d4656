"""Tests of ADL: the layer on hand-made maps, its hooks in the backbone, and one real training step."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import fit_one_step_and_reload
from torch import nn

from wsol.methods.adl import ADL, AttentionDropout, default_adl_layers
from wsol.methods.cam import CAM
from wsol.models import Backbone

SMALL = {"backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 8}, "num_classes": 3}


def features() -> torch.Tensor:
    """Two 2-channel 2x2 maps: attentions [[2, 2], [2, 6]] and [[.5, 0], [0, .5]]."""
    a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[3.0, 2.0], [1.0, 8.0]]])
    b = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]])
    return torch.stack([a, b])


# ------------------------------------------------------------------------------------------ layer
def test_drop_mask_and_importance_map_hand_computed() -> None:
    x, layer = features(), AttentionDropout(threshold=0.9)
    att = layer.attention(x)
    torch.testing.assert_close(att[:, 0], torch.tensor([[[2.0, 2.0], [2.0, 6.0]], [[0.5, 0.0], [0.0, 0.5]]]))
    # Per-image thresholds 0.9 * 6 = 5.4 and 0.9 * 0.5 = 0.45: each image drops its own peak.
    mask = torch.tensor([[[1.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])[:, None]
    torch.testing.assert_close(layer.drop_mask(att), mask)
    torch.testing.assert_close(layer.importance_map(att), torch.sigmoid(att))
    torch.testing.assert_close(AttentionDropout(drop_rate=1.0).train()(x), x * mask)
    torch.testing.assert_close(AttentionDropout(drop_rate=0.0).train()(x), x * torch.sigmoid(att))
    # gamma = 0.3: only pixels below 1.8 and 0.15 are kept.
    mask_low = torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])[:, None]
    torch.testing.assert_close(AttentionDropout(threshold=0.3).drop_mask(att), mask_low)


def test_eval_mode_is_the_identity() -> None:
    x = features()
    assert AttentionDropout(drop_rate=1.0).eval()(x) is x


def test_map_choice_is_per_batch_and_follows_the_generator() -> None:
    x = features()
    att = AttentionDropout.attention(x)
    drop, imp = x * AttentionDropout().drop_mask(att), x * torch.sigmoid(att)
    layer = AttentionDropout(drop_rate=0.5, generator=torch.Generator().manual_seed(0)).train()
    reference = torch.Generator().manual_seed(0)
    chose_drop = []
    for _ in range(20):
        out = layer(x)
        use_drop = torch.rand((), generator=reference).item() < 0.5
        torch.testing.assert_close(out, drop if use_drop else imp)  # the whole batch takes one map
        chose_drop.append(use_drop)
    assert 0 < sum(chose_drop) < 20


# ----------------------------------------------------------------------------------------- method
def twin(model: ADL) -> CAM:
    """A CAM with the same weights and mode: the unhooked network."""
    cam = CAM(**SMALL)
    cam.load_state_dict(model.state_dict())
    return cam.train(model.training)


def manual_features(cam: CAM, x: torch.Tensor, names: set[str], drop: bool) -> torch.Tensor:
    """The backbone run child by child with ADL applied by hand after ``names``."""
    layer = AttentionDropout()
    for name, child in cam.backbone.body.named_children():
        x = child(x)
        if f"body.{name}" in names:
            att = layer.attention(x)
            x = x * (layer.drop_mask(att) if drop else layer.importance_map(att))
    return x


def test_default_layers_and_state_dict() -> None:
    model = ADL(**SMALL)
    assert model.adl_layer_names == ["body.6", "body.7"]  # layer3, layer4 after conv, bn, relu, maxpool, layer1-2
    no_pool = ADL(backbone="resnet10", backbone_kwargs={"stem_stride": 1, "width": 8}, num_classes=3)
    assert no_pool.adl_layer_names == ["body.5", "body.6"]
    assert model.state_dict().keys() == CAM(**SMALL).state_dict().keys()
    assert len(model.backbone.body[6]._forward_hooks) == 1 and not model.backbone.body[5]._forward_hooks


@pytest.mark.parametrize("drop_rate", [0.0, 1.0])
def test_hooked_backbone_train_and_eval(drop_rate: float) -> None:
    torch.manual_seed(0)
    model, x = ADL(adl_drop_rate=drop_rate, **SMALL).train(), torch.randn(2, 3, 32, 32)
    cam = twin(model)
    out = model.features(x)
    torch.testing.assert_close(out, manual_features(cam, x, {"body.6", "body.7"}, drop=drop_rate == 1.0))
    assert not torch.allclose(out, cam.features(x))
    cam = twin(model.eval())  # fresh copy: the train-mode passes above moved the BN running statistics
    assert torch.equal(model.features(x), cam.features(x))
    assert torch.equal(model.cams(x), cam.cams(x))


def test_explicit_layers_on_a_plain_backbone() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 1)
    model = ADL(backbone=Backbone(conv, 4, 1), num_classes=3, adl_drop_rate=1.0, adl_layers=["body"]).train()
    x = torch.randn(2, 3, 4, 4)
    f = nn.functional.conv2d(x, conv.weight, conv.bias)  # calling conv would run the hook
    torch.testing.assert_close(model.features(x), f * AttentionDropout().drop_mask(f.mean(1, keepdim=True)))


def test_hooks_survive_deepcopy_and_channels_last() -> None:
    torch.manual_seed(0)
    model, x = ADL(adl_drop_rate=0.0, **SMALL).train(), torch.randn(2, 3, 32, 32)
    clone = copy.deepcopy(model)
    model.adl.eval()  # if the clone's hooks still called the original's layers, ADL would vanish from it
    assert torch.equal(model.features(x), twin(model).features(x))
    expected = manual_features(twin(clone), x, {"body.6", "body.7"}, drop=False)
    torch.testing.assert_close(clone.features(x), expected)
    last = clone.to(memory_format=torch.channels_last)
    torch.testing.assert_close(last.features(x.to(memory_format=torch.channels_last)), expected)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"adl_drop_rate": -0.1}, "adl_drop_rate"),
        ({"adl_drop_rate": 1.1}, "adl_drop_rate"),
        ({"adl_threshold": 1.5}, "adl_threshold"),
        ({"adl_layers": ["body.99"]}, "adl_layers"),
        ({"adl_layers": ["head"]}, "adl_layers"),
        ({"adl_layers": "body.6"}, "adl_layers"),
        ({"adl_layers": []}, "adl_layers"),
        ({"adl_layers": ["body.6", "body.6"]}, "adl_layers"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ADL(**SMALL, **kwargs)


def test_default_layers_need_a_sequential_body() -> None:
    with pytest.raises(ValueError, match="adl_layers"):
        ADL(backbone=Backbone(nn.Conv2d(3, 4, 1), 4, 1), num_classes=3)
    with pytest.raises(ValueError, match="adl_layers"):
        default_adl_layers(nn.Conv2d(3, 4, 1))
    with pytest.raises(ValueError, match="drop_rate"):
        AttentionDropout(drop_rate=2.0)
    with pytest.raises(ValueError, match="threshold"):
        AttentionDropout(threshold=-0.5)


def test_one_training_step_and_checkpoint_round_trip(tiny_datamodule, tmp_path) -> None:
    torch.manual_seed(0)
    model = ADL(seed=0, **SMALL)
    restored = fit_one_step_and_reload(model, tiny_datamodule, tmp_path)
    assert restored.hparams.adl_drop_rate == 0.75 and restored.hparams.adl_threshold == 0.9
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(restored.cams(x), model.cams(x))
        # The rebuilt model has its hooks back: in training mode its features are not the plain network's.
        restored.train()
        assert not torch.allclose(restored.features(x), twin(restored).features(x))
