"""Tests of BAS: the loss terms on hand-computed tensors, the wiring, gradients and a real training step."""

from __future__ import annotations

import pytest
import torch
from conftest import one_step_trainer
from torch import Tensor, nn

from wsol.augment import CutMix
from wsol.methods.bas import BAS, area_loss, bas_ratio_loss, frozen_forward, gt_activation, topk_mean_map
from wsol.methods.checkpoint import checkpoint_method, load_checkpoint
from wsol.models import Backbone
from wsol.models.bas_net import ReLUConvClassifier

TINY = {"backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 8}, "num_classes": 3, "batch_size": 4}
# The authors' layout and weights (the study's bas_authors row).
AUTHORS = {
    "detach_background": True,
    "mask_stage": "penultimate",
    "generator": "one_conv",
    "class_head": "conv",
    "area_weight": 1.2,
    "frg_weight": 0.5,
}

# A 1x2x2x2 feature map, 2 classes, and a fixed foreground map of class 0.
FEATURES = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])
FOREGROUND = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])


def make_batch(b: int = 4, k: int = 3, size: int = 32) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(b) % k
    return {"image": torch.randn(b, 3, size, size, generator=g), "target": torch.eye(k)[labels], "label": labels}


# ----------------------------------------------------------------------------------- loss terms
def test_ratio_and_area_hand_computed() -> None:
    # Identity classifier: the logits are the channel means. Whole image: GAP = [2.5, 0.5], so S = 2.5 for class 0.
    # Background F * (1 - M): channel 0 = [0, 2, 1.5, 4], mean 1.875 = S_bg; the ratio is 1.875 / 2.5 = 0.75.
    logits = FEATURES.mean(dim=(2, 3))
    background = (FEATURES * (1 - FOREGROUND[:, None])).mean(dim=(2, 3))
    labels = torch.tensor([0])
    s_full, s_bg = gt_activation(logits, labels), gt_activation(background, labels)
    torch.testing.assert_close(s_full, torch.tensor([2.5]))
    torch.testing.assert_close(s_bg, torch.tensor([1.875]))
    torch.testing.assert_close(bas_ratio_loss(s_bg, s_full), torch.tensor(0.75))
    torch.testing.assert_close(area_loss(FOREGROUND), torch.tensor(0.375))  # (1 + 0 + 0.5 + 0) / 4
    # ReLU: a negative logit gives a zero activation, hence a zero ratio.
    torch.testing.assert_close(gt_activation(torch.tensor([[-1.0, 2.0]]), labels), torch.tensor([0.0]))
    # Per-image ratios are averaged: (1/2 + 1/4) / 2, and the area is averaged per image then over the batch.
    torch.testing.assert_close(bas_ratio_loss(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 4.0])), torch.tensor(0.375))
    torch.testing.assert_close(area_loss(torch.stack([FOREGROUND[0], torch.ones(2, 2)])), torch.tensor(0.6875))


def test_denominator_is_detached() -> None:
    s_bg = torch.tensor([1.875], requires_grad=True)
    s_full = torch.tensor([2.5], requires_grad=True)
    bas_ratio_loss(s_bg, s_full).backward()
    assert s_full.grad is None  # no gradient path through S
    torch.testing.assert_close(s_bg.grad, torch.tensor([0.4]))  # d(S_bg / S) / dS_bg = 1 / 2.5
    s_full = torch.tensor([2.5], requires_grad=True)
    bas_ratio_loss(s_bg, s_full, detach_denominator=False).backward()
    torch.testing.assert_close(s_full.grad, torch.tensor([-0.3]))  # -S_bg / S^2 = -1.875 / 6.25


def test_ratio_clamp_makes_large_ratios_constant() -> None:
    s_bg = torch.tensor([3.0, 2.0, 1.0], requires_grad=True)
    s_full = torch.tensor([2.0, 2.0, 4.0])
    # Ratios 1.5 and 1.0 reach the clamp and become the constant 1; 0.25 is kept: (1 + 1 + 0.25) / 3.
    loss = bas_ratio_loss(s_bg, s_full)
    torch.testing.assert_close(loss, torch.tensor(0.75))
    loss.backward()
    torch.testing.assert_close(s_bg.grad, torch.tensor([0.0, 0.0, 0.25 / 3]))
    s_bg.grad = None
    free = bas_ratio_loss(s_bg, s_full, ratio_clamp=None)
    torch.testing.assert_close(free, torch.tensor((1.5 + 1.0 + 0.25) / 3))
    free.backward()
    torch.testing.assert_close(s_bg.grad, torch.tensor([0.5, 0.5, 0.25]) / 3)
    torch.testing.assert_close(bas_ratio_loss(s_bg, s_full, ratio_clamp=0.5), torch.tensor((0.5 + 0.5 + 0.25) / 3))
    with pytest.raises(ValueError, match="ratio_clamp"):
        bas_ratio_loss(s_bg, s_full, ratio_clamp=0.0)


def test_topk_mean_map_hand_computed() -> None:
    maps = torch.tensor([1.0, 2.0, 4.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    logits = torch.tensor([[0.1, 0.9, 0.5]])  # ranking: class 1, class 2, class 0
    torch.testing.assert_close(topk_mean_map(maps, logits, 1), torch.full((1, 2, 2), 2.0))
    torch.testing.assert_close(topk_mean_map(maps, logits, 2), torch.full((1, 2, 2), 3.0))
    torch.testing.assert_close(topk_mean_map(maps, logits, 3), torch.full((1, 2, 2), 7.0 / 3))
    with pytest.raises(ValueError, match="k must be"):
        topk_mean_map(maps, logits, 4)


# ----------------------------------------------------------------------------------- wiring
class FirstChannels(nn.Module):
    """Backbone body whose features are the image's first two channels."""

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :2]


class FixedMap(nn.Module):
    """A generator returning ``sigmoid(logit)`` for fixed logits, for class 0 (class 1 gets the complement)."""

    def __init__(self, foreground: Tensor) -> None:
        super().__init__()
        self.logit = nn.Parameter(torch.logit(foreground.clamp(1e-6, 1 - 1e-6)))

    def forward(self, features: Tensor) -> Tensor:
        fg = torch.sigmoid(self.logit)[:, None].expand(features.shape[0], 1, *features.shape[2:])
        return torch.cat([fg, 1 - fg], dim=1)


def hand_model(**kwargs) -> BAS:
    backbone = Backbone(FirstChannels(), out_channels=2, stride=1)
    model = BAS(backbone=backbone, num_classes=2, batch_size=1, **kwargs)
    with torch.no_grad():
        model.head.conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        model.head.conv.bias.zero_()
    model.net.generator = FixedMap(FOREGROUND)
    return model


def test_loss_terms_through_the_module_hand_computed() -> None:
    model = hand_model(bas_weight=2.0, area_weight=3.0, frg_weight=0.5)
    image = torch.cat([FEATURES, torch.zeros(1, 1, 2, 2)], dim=1)
    total, terms = model.loss({"image": image, "target": torch.tensor([[1.0, 0.0]])})
    assert set(terms) == {"cls", "frg", "bas", "area"}
    # cls: logits [2.5, 0.5] -> CE = log(1 + e^-2); frg: F * M has channel means [(1 + 1.5) / 4, 0] = [0.625, 0].
    torch.testing.assert_close(terms["cls"], torch.log1p(torch.exp(torch.tensor(-2.0))))
    torch.testing.assert_close(terms["frg"], torch.log1p(torch.exp(torch.tensor(-0.625))))
    torch.testing.assert_close(terms["bas"], torch.tensor(0.75), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(terms["area"], torch.tensor(0.375), atol=1e-5, rtol=1e-5)
    expected = terms["cls"] + 0.5 * terms["frg"] + 2.0 * terms["bas"] + 3.0 * terms["area"]
    torch.testing.assert_close(total, expected)


def test_background_branch_is_frozen_and_maps_come_from_the_generator() -> None:
    model = hand_model(frg_weight=0.0, area_weight=0.0)
    image = torch.cat([FEATURES, torch.zeros(1, 1, 2, 2)], dim=1)
    batch = {"image": image, "target": torch.tensor([[1.0, 0.0]])}
    # cls alone reaches the head; the BAS term must not: its classifier is frozen and S is detached.
    _, terms = model.loss(batch)
    terms["bas"].backward()
    assert model.head.conv.weight.grad is None and model.head.conv.bias.grad is None
    # dL/dM(i,j) = -F_0(i,j) / 4 / 2.5 (S = 2.5 detached), times sigmoid' = M (1 - M) at each position.
    m = FOREGROUND[0]
    torch.testing.assert_close(
        model.net.generator.logit.grad[0], -FEATURES[0, 0] / 10 * m * (1 - m), atol=1e-6, rtol=1e-4
    )
    model.eval()
    with torch.no_grad():
        logits, maps = model.forward_with_cams(image)
        torch.testing.assert_close(logits, torch.tensor([[2.5, 0.5]]))
        torch.testing.assert_close(maps[:, 0], FOREGROUND, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.cams(image, torch.tensor([1])), 1 - FOREGROUND, atol=1e-5, rtol=1e-5)
    model.net.inference_topk = 2  # every channel: the mean of both maps, here 0.5 everywhere
    with torch.no_grad():
        torch.testing.assert_close(model.forward_with_cams(image)[1], torch.full((1, 2, 2, 2), 0.5))


def test_gradients_reach_backbone_and_generator_and_groups_cover_all() -> None:
    torch.manual_seed(0)
    model = BAS(head_lr_mult=10.0, generator_channels=16, **TINY)
    assert model.net.generator.layers[0].out_channels == 16
    assert BAS(**TINY).net.generator.layers[0].out_channels == 64  # min(backbone channels, 512)
    _, terms = model.loss(make_batch())
    (terms["bas"] + terms["area"]).backward()  # the localization terms alone
    for name, p in model.named_parameters():
        if name.startswith("net.head."):
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    groups = model.parameter_groups()
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    new = {id(p) for m in (model.head, model.net.generator) for p in m.parameters()}
    for g in groups:
        is_new = {id(p) for p in g["params"]} <= new
        assert g["lr"] == pytest.approx(0.1 * 4 / 256 * (10.0 if is_new else 1.0))


# ------------------------------------------------------------------------ the authors' corrections
def test_detached_background_reaches_the_generator_never_the_features() -> None:
    # A1. With the hand model the generator ignores the features, so the BAS term reaches them only through the
    # background branch (S is detached): with the cut the image's gradient is exactly zero; without it,
    # dS_bg / dF_0(i, j) = (1 - M(i, j)) / 4 (identity head, class 0), divided by S = 2.5.
    image = torch.cat([FEATURES, torch.zeros(1, 1, 2, 2)], dim=1)
    target = torch.tensor([[1.0, 0.0]])
    m = FOREGROUND[0]
    for detach in (True, False):
        model = hand_model(frg_weight=0.0, area_weight=0.0, detach_background=detach)
        x = image.clone().requires_grad_(True)
        _, terms = model.loss({"image": x, "target": target})
        torch.testing.assert_close(terms["bas"], torch.tensor(0.75), atol=1e-5, rtol=1e-5)  # same value either way
        terms["bas"].backward()
        if detach:
            assert x.grad is None or torch.count_nonzero(x.grad) == 0
        else:
            expected = torch.stack([(1 - m) / 10, torch.zeros(2, 2), torch.zeros(2, 2)])[None]
            torch.testing.assert_close(x.grad, expected, atol=1e-6, rtol=1e-5)
        # The generator's gradient is the same with and without the cut: -F_0 / 10 * M (1 - M).
        torch.testing.assert_close(
            model.net.generator.logit.grad[0], -FEATURES[0, 0] / 10 * m * (1 - m), atol=1e-6, rtol=1e-4
        )


def test_frozen_forward_passes_gradient_to_the_input_only_and_keeps_running_stats() -> None:
    torch.manual_seed(0)
    branch = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3)).train()
    x = torch.randn(4, 2, 3, 3, requires_grad=True)
    stats = [b.clone() for b in branch.buffers()]
    out = frozen_forward(branch, x)
    assert all(torch.equal(a, b) for a, b in zip(stats, branch.buffers(), strict=True))  # running stats untouched
    torch.testing.assert_close(out, branch(x.detach()))  # batch statistics in training mode, as a fresh copy would
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in branch.parameters())


def test_conv_head_foreground_pools_a_finer_mask() -> None:
    model = BAS(**TINY, **AUTHORS)
    assert isinstance(model.head, ReLUConvClassifier)
    features = torch.randn(2, 64, 2, 2)
    maps = model.head.class_maps(features)
    assert maps.min() >= 0  # logits are the GAP of ReLU'd maps
    torch.testing.assert_close(model.foreground_logits(features, torch.ones(2, 1, 2, 2)), model.head(features))
    # A 4x4 mask with ones on its top-left 2x2 block pools to [[1, 0], [0, 0]]: the logits are maps[..., 0, 0] / 4.
    mask = torch.zeros(2, 1, 4, 4)
    mask[..., :2, :2] = 1.0
    torch.testing.assert_close(model.foreground_logits(features, mask), maps[..., 0, 0] / 4)


def test_authors_layout_shapes_and_where_the_background_gradient_goes() -> None:
    torch.manual_seed(0)
    model = BAS(**TINY, **AUTHORS)
    assert model.net.generator.layers[0].in_channels == 32 and len(model.net.generator.layers) == 1  # stage 3
    batch = make_batch()
    model.eval()
    with torch.no_grad():
        logits, maps = model.forward_with_cams(batch["image"])
    # 32 px: stage 3 at 4x4 (the generator's maps), the last stage at 2x2.
    assert logits.shape == (4, 3) and maps.shape == (4, 3, 4, 4) and model.features(batch["image"]).shape[-1] == 2
    assert logits.min() >= 0
    model.train()
    last = model.net.last_stage()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    model.net.stages(batch["image"])  # the training pass alone
    alone = [b.clone() for b in last.buffers()]
    model.load_state_dict(start)
    _, terms = model.loss(batch)
    # The frozen branch's BatchNorm layers leave the real running statistics as the training pass left them.
    assert all(torch.equal(a, b) for a, b in zip(alone, last.buffers(), strict=True))
    terms["bas"].backward()
    frozen = {id(p) for m in (model.head, last) for p in m.parameters()}
    for name, p in model.named_parameters():
        if id(p) in frozen:
            assert p.grad is None, name
        else:  # the generator and, through its input, the layers below it
            assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"bas_weight": -1.0}, "bas_weight"),
        ({"area_weight": -0.1}, "area_weight"),
        ({"frg_weight": "1"}, "frg_weight"),
        ({"detach_denominator": 1}, "detach_denominator"),
        ({"ratio_clamp": 0.0}, "ratio_clamp"),
        ({"generator_channels": 0}, "generator_channels"),
        ({"inference_topk": 0}, "inference_topk"),
        ({"inference_topk": 4}, "inference_topk"),
        ({"warmup_epochs_loc": -1}, "warmup_epochs_loc"),
        ({"warmup_epochs_loc": 1.5}, "warmup_epochs_loc"),
        ({"mixer": CutMix(seed=0)}, "mixer"),
        ({"multilabel": True}, "multilabel"),
        ({"detach_background": 1}, "detach_background"),
        ({"mask_stage": "stage3"}, "mask_stage"),
        ({"generator": "three_conv"}, "generator"),
        ({"class_head": "mlp"}, "class_head"),
        ({"class_head_channels": 0}, "class_head_channels"),
    ],
)
def test_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        BAS(**{**TINY, **kwargs})


def test_penultimate_mask_needs_a_backbone_it_can_cut() -> None:
    backbone = Backbone(FirstChannels(), out_channels=2, stride=1)
    with pytest.raises(ValueError, match="FirstChannels|Backbone.*last stage"):
        BAS(backbone=backbone, num_classes=2, batch_size=1, mask_stage="penultimate")


# ---------------------------------------------------------------------------------- training
@pytest.mark.parametrize("layout", [{}, AUTHORS], ids=["default", "authors"])
def test_training_step_logs_terms_and_checkpoint_round_trips(layout: dict, tiny_datamodule, tmp_path) -> None:
    torch.manual_seed(0)
    model = BAS(bas_weight=1.5, **TINY, **layout)
    trainer = one_step_trainer(tmp_path, val_batches=1, checkpoint_dir=tmp_path / "ckpt")
    before = [p.detach().clone() for p in model.net.generator.parameters()]
    trainer.fit(model, datamodule=tiny_datamodule)
    metrics = trainer.callback_metrics
    for name in ("train/loss", "train/cls", "train/frg", "train/bas", "train/area", "val/loss", "val/MaxBoxAccV2"):
        assert torch.isfinite(metrics[name]), name
    frg_weight, area_weight = layout.get("frg_weight", 1.0), layout.get("area_weight", 1.0)
    terms = (
        metrics["train/cls"]
        + frg_weight * metrics["train/frg"]
        + 1.5 * metrics["train/bas"]
        + area_weight * metrics["train/area"]
    )
    assert metrics["train/loss"].item() == pytest.approx(terms.item(), rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.net.generator.parameters(), strict=True))
    path = tmp_path / "ckpt" / "last.ckpt"
    assert checkpoint_method(path) == "wsol.methods.bas.BAS"
    restored = load_checkpoint(path)
    assert type(restored) is BAS and not restored.training and restored.hparams.bas_weight == 1.5
    assert restored.net.mask_stage == layout.get("mask_stage", "last")
    x = make_batch()["image"]
    model.eval()
    with torch.no_grad():
        logits, maps = model.forward_with_cams(x)
        assert torch.equal(restored.forward_with_cams(x)[1], maps)
        assert torch.equal(restored(x), logits)
        assert maps.min() >= 0 and maps.max() <= 1


def test_warmup_trains_the_classifier_alone_then_every_term(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = BAS(warmup_epochs_loc=2, bas_weight=2.0, area_weight=3.0, frg_weight=0.5, **TINY)
    batch = make_batch()
    monkeypatch.setattr(BAS, "current_epoch", property(lambda self: 1))
    total, terms = model.loss(batch)
    assert torch.equal(total, terms["cls"])  # classification only
    assert not any(terms[k].requires_grad for k in ("frg", "bas", "area"))  # monitored, not trained
    total.backward()
    assert all(p.grad is None for p in model.net.generator.parameters())
    model.zero_grad(set_to_none=True)
    monkeypatch.setattr(BAS, "current_epoch", property(lambda self: 2))
    total2, terms2 = model.loss(batch)
    expected = terms2["cls"] + 0.5 * terms2["frg"] + 2.0 * terms2["bas"] + 3.0 * terms2["area"]
    torch.testing.assert_close(total2, expected)
    for k in terms:  # same weights, same batch: the same values either side of the switch
        torch.testing.assert_close(terms2[k], terms[k])
    total2.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net.generator.parameters())
