"""Tests of SEAM: normalisations, ER/ECR/min-pool on hand-computed tensors, the PCM, wiring and smoke training."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from wsol.augment import CutMix
from wsol.methods.seam import SEAM, ecr_loss, equivariant_transform, er_loss, max_onehot, min_pool_loss
from wsol.models import Backbone
from wsol.models.pcm import PCM, pcm_input, relu_minmax, with_background

BACKBONES = {"resnet10": {"stem_stride": 1}, "timm:resnet18": {"output_stride": 8}}


def make_batch(b: int = 4, k: int = 3, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(b) % k
    return {"image": torch.randn(b, 3, size, size, generator=g), "target": torch.eye(k)[labels], "label": labels}


def pointwise_seam(**kwargs) -> SEAM:
    """SEAM over a 1x1-conv backbone: its CAMs commute exactly with any pixel permutation."""
    torch.manual_seed(0)
    backbone = Backbone(nn.Conv2d(3, 8, 1, bias=False), out_channels=8, stride=1)
    model = SEAM(backbone=backbone, num_classes=3, batch_size=4, dropout=0.0, **kwargs)
    with torch.no_grad():  # positive weights: every class map has positive values that a transform can move
        model.backbone.body.weight.abs_()
        model.head.weight.abs_()
    return model


# ------------------------------------------------------------------------------ normalisations
def test_relu_minmax_hand_computed() -> None:
    cams = torch.tensor([[[[0.0, 1.0], [3.0, -1.0]], [[1.0, 1.0], [2.0, 5.0]]]])
    out = relu_minmax(cams, eps=0.0)
    # ReLU, then (p - min) / (max - min) per channel: [0, 1, 3, 0] / 3 and ([1, 1, 2, 5] - 1) / 4
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 1 / 3], [1.0, 0.0]]))
    torch.testing.assert_close(out[0, 1], torch.tensor([[0.0, 0.0], [0.25, 1.0]]))


def test_pcm_input_hand_computed() -> None:
    cams = torch.tensor([[[[2.0, 1.0]], [[1.0, 4.0]]]], requires_grad=True)  # (1, 2 classes, 1, 2)
    out = pcm_input(cams, eps=0.0)
    # max-only norm: c0 [1, .5], c1 [.25, 1]; background 1 - max = 0; non-argmax fg zeroed
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]]]]))
    assert not out.requires_grad
    weak = pcm_input(torch.tensor([[[[2.0, 1.0]], [[-1.0, -1.0]]]]))
    torch.testing.assert_close(weak[0, 0], torch.tensor([[0.0, 0.5]]), atol=1e-4, rtol=0)  # bg where fg is weak


def test_with_background_and_max_onehot() -> None:
    fg = torch.tensor([[[[0.2, 0.9]], [[0.6, 0.9]]]])
    full = with_background(fg)
    torch.testing.assert_close(full[0, 0], torch.tensor([[0.4, 0.1]]))
    onehot = max_onehot(full)
    # Background kept; per pixel only the top fg class (ties kept, as in the SEAM code).
    torch.testing.assert_close(onehot[0, :, 0], torch.tensor([[0.4, 0.1], [0.0, 0.9], [0.6, 0.9]]))


# --------------------------------------------------------------------------------------- losses
def test_er_loss_hand_computed() -> None:
    a = torch.tensor([[[[1.0, 0.0]], [[0.5, 0.5]]]])
    b = torch.tensor([[[[0.0, 0.0]], [[0.5, 0.0]]]])
    assert er_loss(a, b).item() == pytest.approx((1.0 + 0.5) / 4)


def test_ecr_loss_hand_computed_and_detached() -> None:
    target = torch.tensor([[[[0.5, 0.1]], [[0.5, 0.9]]]], requires_grad=True)  # (1, bg + 1 class, 1, 2)
    refined = torch.tensor([[[[0.2, 0.1]], [[0.0, 0.3]]]], requires_grad=True)
    # |target - refined| = [0.3, 0.0, 0.5, 0.6]; the top half (k = 2) averages 0.6 and 0.5.
    loss = ecr_loss(target, refined, top_ratio=0.5)
    assert loss.item() == pytest.approx(0.55)
    loss.backward()
    assert target.grad is None  # the other branch's CAM is a fixed target
    torch.testing.assert_close(refined.grad, torch.tensor([[[[0.0, 0.0]], [[-0.5, -0.5]]]]))
    assert ecr_loss(target, refined, top_ratio=0.2).item() == pytest.approx(0.6)  # k = max(1, int(0.8))


def test_min_pool_loss_hand_computed() -> None:
    fg = torch.tensor([[[[0.3, 0.2], [0.5, 0.9]], [[0.0, 0.6], [0.1, 0.0]]]])
    # per-pixel max [0.3, 0.6, 0.5, 0.9]; k = 4 // 4 = 1 lowest -> 0.3
    assert min_pool_loss(fg).item() == pytest.approx(0.3)
    assert min_pool_loss(-fg).item() == 0.0  # ReLU'd


def test_er_is_zero_for_an_exactly_equivariant_model() -> None:
    batch = make_batch()
    for kwargs in ({"transform": "flip"}, {"transform": "rotation", "rotation_degrees": 90.0}):
        _, terms = pointwise_seam(**kwargs).loss(batch)
        assert terms["er"].item() == pytest.approx(0.0, abs=1e-6), kwargs
    # The same model is not equivariant to a translation with zero fill: content shifted out of the image (here the
    # brightest corner, so the maps' maximum) is lost, which changes the normalised maps. Nor is a ResNet to rescaling.
    batch["image"][..., -2:, -2:] = 10.0
    assert pointwise_seam(transform="translation").loss(batch)[1]["er"] > 1e-4
    torch.manual_seed(0)
    resnet = SEAM(num_classes=3, batch_size=4, backbone_kwargs={"stem_stride": 1}, dropout=0.0)
    assert resnet.loss(make_batch(size=64))[1]["er"] > 1e-4


def test_loss_terms_and_weights() -> None:
    model = pointwise_seam(er_weight=2.0, ecr_weight=0.5, min_pool_weight=0.0)
    total, terms = model.loss(make_batch())
    expected = terms["cls"] + 2.0 * terms["er"] + 0.5 * terms["ecr"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(terms) == {"cls", "min_pool", "er", "ecr"}
    assert terms["ecr"] > 0


# ------------------------------------------------------------------------------------------ PCM
def test_pcm_shape_and_column_normalisation() -> None:
    torch.manual_seed(0)
    pcm = PCM([16, 8], proj_channels=4, embed_channels=6)
    image, feats = torch.randn(2, 3, 20, 20), [torch.randn(2, 16, 5, 5), torch.randn(2, 8, 3, 3)]
    aff = pcm.affinity(image, feats, (5, 5))
    assert aff.shape == (2, 25, 25) and (aff >= 0).all()
    torch.testing.assert_close(aff.sum(dim=1), torch.ones(2, 25), atol=1e-4, rtol=0)
    cams = torch.rand(2, 4, 5, 5)
    out = pcm(cams, image, feats)
    assert out.shape == cams.shape
    # Each output pixel is a convex combination of input pixels.
    lo, hi = cams.flatten(2).amin(2), cams.flatten(2).amax(2)
    assert (out.flatten(2).amin(2) >= lo - 1e-4).all() and (out.flatten(2).amax(2) <= hi + 1e-4).all()
    torch.testing.assert_close(pcm(torch.ones(2, 4, 5, 5), image, feats), torch.ones(2, 4, 5, 5), atol=1e-4, rtol=0)


def test_pcm_uniform_affinity_averages_and_gradients_stay_in_the_module() -> None:
    pcm = PCM([4], proj_channels=2, embed_channels=3)
    image, feat = torch.ones(1, 3, 2, 2), torch.ones(1, 4, 2, 2, requires_grad=True)
    cams = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]], requires_grad=True)
    out = pcm(cams, image, [feat])  # identical features everywhere: every pixel becomes the mean
    torch.testing.assert_close(out, torch.full((1, 1, 2, 2), 3.0), atol=1e-4, rtol=0)
    pcm(cams.detach(), torch.randn(1, 3, 2, 2), [feat]).sum().backward()
    assert feat.grad is None  # features are detached, as in the SEAM code
    assert pcm.embed.weight.grad is not None and pcm.proj[0].weight.grad is not None


# ----------------------------------------------------------------------------------- transforms
def test_transforms() -> None:
    x = torch.arange(2 * 20 * 20, dtype=torch.float32).view(1, 2, 20, 20)
    assert equivariant_transform(x, "rescale", scale=0.3).shape == (1, 2, 6, 6)
    torch.testing.assert_close(equivariant_transform(equivariant_transform(x, "flip"), "flip"), x)
    r = x
    for _ in range(4):
        r = equivariant_transform(r, "rotation", degrees=90.0)
    torch.testing.assert_close(r, x)
    # A 30-degree rotation through grid_sample keeps the centre pixel region and zero-fills corners.
    assert equivariant_transform(torch.ones(1, 1, 21, 21), "rotation", degrees=30.0)[0, 0, 0, 0] < 0.5
    t = equivariant_transform(x, "translation", shift=0.1)
    torch.testing.assert_close(t[..., 2:, 2:], x[..., :18, :18])
    assert (t[..., :2, :] == 0).all() and (t[..., :, :2] == 0).all()
    with pytest.raises(ValueError):
        equivariant_transform(x, "shear")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SEAM(num_classes=3, transform="shear")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- wiring
def test_forward_shapes_cam_source_and_hooks_released() -> None:
    torch.manual_seed(0)
    model = SEAM(num_classes=3, batch_size=4, backbone_kwargs={"stem_stride": 1}, pcm_layers=["body.5", "body.4"])
    # With a stride-1 stem (no max-pool) body.4 and body.5 are layer2 and layer3 of ResNet-10.
    assert [p.weight.shape[1] for p in model.net.pcm.proj] == [256, 128]
    assert model.head.bias is None
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    logits, cams, refined = model.net.seam_forward(x)
    assert logits.shape == (2, 3) and cams.shape == (2, 3, 4, 4) and refined.shape == (2, 4, 4, 4)
    torch.testing.assert_close(logits, model(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.cams(x), refined[:, 1:])
    model.net.cam_source = "cam"
    torch.testing.assert_close(model.cams(x, torch.tensor([2, 0])), cams[[0, 1], [2, 0]])
    assert all(not m._forward_hooks for m in model.backbone.modules())


def test_parameter_groups_follow_seam() -> None:
    model = SEAM(num_classes=3, batch_size=256, lr=0.01, weight_decay=5e-4)
    groups = model.parameter_groups()
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [
        (0.01, 5e-4),
        (pytest.approx(0.02), 0.0),
        (pytest.approx(0.1), 5e-4),  # head and PCM are bias-free: no x20 group
    ]
    new = {id(p) for m in (model.head, model.net.pcm) for p in m.parameters()}
    assert {id(p) for g in groups[2:] for p in g["params"]} == new
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())


@pytest.mark.parametrize("official", [False, True])
def test_optimizer_official_vs_corrected(official: bool) -> None:
    model = SEAM(num_classes=3, batch_size=8, weight_decay=5e-4, official_optimizer=official)
    model._trainer = SimpleNamespace(estimated_stepping_batches=100, max_epochs=1, datamodule=None)
    config = model.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    momenta = {g["momentum"] for g in opt.param_groups}
    if official:
        assert momenta == {5e-4}  # PolyOptimizer's positional-argument bug, reproduced on request
        assert sched.lr_lambdas[0](50) == pytest.approx(0.5**0.9)
        assert sched.lr_lambdas[0](150) == pytest.approx(0.01**0.9)
    else:
        assert momenta == {0.9}


def test_freeze_bn_survives_train() -> None:
    model = SEAM(num_classes=3, batch_size=4, freeze_bn=True)
    model.train()
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training and not m.weight.requires_grad for m in bns)
    assert all(p.requires_grad for p in model.net.pcm.parameters())


def test_mixed_targets_mask_present_classes() -> None:
    model = pointwise_seam(mixer=CutMix(seed=0, pairing="flip"))
    batch = make_batch()
    total, terms = model.loss(batch)
    assert torch.isfinite(total) and terms["er"] >= 0


# ---------------------------------------------------------------------------------- smoke runs
@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("mixer", [None, "cutmix"])
def test_fast_dev_run(tiny_datamodule, backbone: str, mixer: str | None) -> None:
    model = SEAM(
        backbone=backbone,
        backbone_kwargs=BACKBONES[backbone],
        num_classes=3,
        batch_size=4,
        mixer=CutMix(seed=0) if mixer else None,
    )
    trainer = pl.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=tiny_datamodule)
    for name in ("train/loss", "train/cls", "train/min_pool", "train/er", "train/ecr"):
        assert torch.isfinite(trainer.callback_metrics[name])
    assert trainer.callback_metrics["train/er"] > 0 and trainer.callback_metrics["train/ecr"] > 0


def test_fast_dev_run_multilabel_official_optimizer() -> None:
    g = torch.Generator().manual_seed(0)
    data = [
        {"image": torch.randn(3, 32, 32, generator=g), "target": (torch.rand(4, generator=g) > 0.5).float()}
        for _ in range(8)
    ]
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    model = SEAM(
        num_classes=4, multilabel=True, batch_size=4, backbone_kwargs={"stem_stride": 1}, official_optimizer=True
    )
    trainer = pl.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=loader)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert trainer.optimizers[0].param_groups[0]["momentum"] == model.hparams.weight_decay
