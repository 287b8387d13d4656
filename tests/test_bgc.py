"""Tests of BGC: each loss term on a hand-computed 2x2 feature map, the warm-up switch, gradients and a real step."""

from __future__ import annotations

import pytest
import torch
from conftest import one_step_trainer
from torch import nn

from wsol.augment import CutMix
from wsol.methods.bgc import (
    BGC,
    attentive_drop_mask,
    dropout_consistency_loss,
    masked_mean,
    max_class_similarity,
    norm_loss,
    normalized_feature_map,
    region_masks,
    sign_regions,
    similarity_loss,
    similarity_map,
    two_pass_consistency_loss,
)
from wsol.methods.cam import CAM
from wsol.methods.checkpoint import checkpoint_method, load_checkpoint
from wsol.models import create_backbone
from wsol.models.stages import split_inside_last_stage

TINY = {"backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 8}, "num_classes": 3, "batch_size": 4}

# One image, C = 2, 2x2 positions: f = (4, 0), (0, 2) / (0.3, 0.4), (0, 1).
# Norms 4, 2 / 0.5, 1, so F = 1, 0.5 / 0.125, 0.25. Against w_0 = (2, 0): cos = 1, 0 / 0.6, 0.
FEATURES = torch.tensor([[[[4.0, 0.0], [0.3, 0.0]], [[0.0, 2.0], [0.4, 1.0]]]])
HEAD = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # class rows w_0, w_1
F_MAP = torch.tensor([[[1.0, 0.5], [0.125, 0.25]]])
S_MAP = torch.tensor([[[1.0, 0.0], [0.6, 0.0]]])
# Min-max norms: (n - 0.5) / 3.5 = 1, 3/7 / 0, 1/7.
F_MINMAX = torch.tensor([[[1.0, 3.0 / 7.0], [0.0, 1.0 / 7.0]]])
# The authors' settings (the study's bgc_authors row, with its 3 warm-up epochs).
AUTHORS = {
    "consistency": "drop",
    "drop_prob": 0.25,
    "consistency_warmup": False,
    "norm_scaling": "minmax",
    "norm_regions": "sign",
    "lambda_sim": 0.5,
    "lambda_norm": 0.05,
    "lambda_cons": 2.0,
    "tau_fg": 0.4,
    "tau_bg": 0.2,
}


def make_batch(b: int = 4, k: int = 3, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(b) % k
    return {"image": torch.randn(b, 3, size, size, generator=g), "target": torch.eye(k)[labels], "label": labels}


def two_class_model(head: torch.Tensor = HEAD, **kwargs) -> BGC:
    """A BGC whose 2-class head holds ``head`` (the backbone is not used by ``localization_terms``)."""
    model = BGC(backbone="resnet10", backbone_kwargs={"width": 8}, num_classes=2, batch_size=1, **kwargs)
    model.head = type(model.head)(2, 2)
    with torch.no_grad():
        model.head.weight.copy_(head[:, :, None, None])
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


# ------------------------------------------------------------------------ the authors' corrections
def test_minmax_feature_map_hand_computed() -> None:
    # B3. Norms 4, 2 / 0.5, 1: max scaling keeps the minimum at 0.125, min-max sends it to 0.
    torch.testing.assert_close(normalized_feature_map(FEATURES, "minmax"), F_MINMAX)
    torch.testing.assert_close(normalized_feature_map(FEATURES, "max"), F_MAP)
    # A constant map has no range: zeros, not NaN; a map already spanning [0, m] is just divided by m.
    assert normalized_feature_map(torch.ones(1, 2, 2, 2), "minmax").eq(0).all()
    with pytest.raises(ValueError, match="scaling"):
        normalized_feature_map(FEATURES, "sum")


def test_attentive_drop_mask_hand_computed() -> None:
    # B1. Channel means 1, 0.85 / 0.8, 0.2: with p = 1 exactly the positions above 0.8 of the maximum go (0.8 stays).
    features = torch.tensor([[[[1.5, 1.2], [0.6, 0.4]], [[0.5, 0.5], [1.0, 0.0]]]])
    keep = attentive_drop_mask(features, 0.8, 1.0)
    assert keep.shape == (1, 1, 2, 2) and keep.tolist() == [[[[0.0, 0.0], [1.0, 1.0]]]]
    assert attentive_drop_mask(features, 0.8, 0.0).eq(1).all()  # p = 0 drops nothing
    assert attentive_drop_mask(features, 0.5, 1.0).tolist() == [[[[0.0, 0.0], [0.0, 1.0]]]]
    # 0 < p < 1: only candidates are dropped, each independently, about p of them.
    big = torch.zeros(1, 1, 40, 40)
    big[..., :20, :] = 1.0  # 800 candidates
    keep = attentive_drop_mask(big, 0.8, 0.25, torch.Generator().manual_seed(0))
    assert keep[..., 20:, :].eq(1).all()
    assert 150 < int((keep[..., :20, :] == 0).sum()) < 250


def test_two_pass_consistency_hand_computed() -> None:
    # With identity remaining blocks the L1 is |f| at the dropped positions, averaged over every element: the two
    # dropped positions hold (1.5, 0.5) and (1.2, 0.5), so (2 + 1.7) / 8.
    features = torch.tensor([[[[1.5, 1.2], [0.6, 0.4]], [[0.5, 0.5], [1.0, 0.0]]]], requires_grad=True)
    keep = attentive_drop_mask(features, 0.8, 1.0)
    loss = two_pass_consistency_loss(features, nn.Identity(), keep)
    assert loss.item() == pytest.approx(3.7 / 8)
    # Remaining blocks shared between the passes: a 1x1 convolution doubling its input doubles the distance.
    conv = nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(2 * torch.eye(2)[:, :, None, None])
    assert two_pass_consistency_loss(features, conv, keep).item() == pytest.approx(7.4 / 8)
    loss.backward()  # sign(f - f * keep) * (1 - keep) / 8 at the dropped positions, 0 elsewhere
    torch.testing.assert_close(features.grad, (1 - keep).expand_as(features) / 8)


def test_drop_point_follows_the_last_stage() -> None:
    # ResNet-10's last stage is one block: the drop falls before it. ResNet-18's has two: after the first.
    r10 = create_backbone("resnet10", width=8)
    first, rest = split_inside_last_stage(r10)
    assert rest is r10.body[-1] and list(first) == list(r10.body[:-1])
    r18 = create_backbone("resnet18").eval()
    first, rest = split_inside_last_stage(r18)
    assert first[-1] is r18.body[-1][0] and list(rest) == [r18.body[-1][1]]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rest(first(x)), r18(x))


def test_sign_regions_and_the_authors_terms_hand_computed() -> None:
    # B4 + B3 + B5's thresholds. Head w_0 = (1, -1), w_1 = (0, 1). cos(f, w_0) = 0.7071, -0.7071 / -0.1414, -0.7071.
    head = torch.tensor([[1.0, -1.0], [0.0, 1.0]])
    s0 = similarity_map(FEATURES, head[[0]])
    r = 2**-0.5
    torch.testing.assert_close(s0, torch.tensor([[[r, -r], [-0.2 * r, -r]]]))
    fg, bg = sign_regions(s0)
    assert fg.tolist() == [[[True, False], [False, False]]] and bg.tolist() == [[[False, True], [True, True]]]
    assert sign_regions(torch.tensor([[[0.0]]]))[0].sum() == sign_regions(torch.tensor([[[0.0]]]))[1].sum() == 0
    # The largest cosine over both classes: 0.7071, 1 / 0.8, 1 (no negative position).
    torch.testing.assert_close(max_class_similarity(FEATURES, head), torch.tensor([[[r, 1.0], [0.8, 1.0]]]))

    model = two_class_model(head, norm_scaling="minmax", norm_regions="sign", tau_fg=0.4, tau_bg=0.2)
    terms = model.alignment_terms(FEATURES, torch.tensor([0]))
    # Similarity regions on the min-max norms (1, 3/7 / 0, 1/7): fg = positions 0 and 1, bg = 2 and 3.
    # L_sim = mean(1 - r, 1 + r) + mean(1 - 0.2 r, 1 - r) = 1 + (2 - 1.2 r) / 2.
    assert terms["sim"].item() == pytest.approx(1.0 + (2 - 1.2 * r) / 2)
    # Norm regions by the sign of cos(f, w_0): fg = position 0 (F 1), bg = the rest: 0 + mean(3/7, 0, 1/7).
    assert terms["norm"].item() == pytest.approx(4.0 / 21.0)
    # sign_max: every position is foreground, no background: mean(1 - F) = mean(0, 4/7, 1, 6/7).
    model = two_class_model(head, norm_scaling="minmax", norm_regions="sign_max", tau_fg=0.4, tau_bg=0.2)
    assert model.alignment_terms(FEATURES, torch.tensor([0]))["norm"].item() == pytest.approx((4 / 7 + 1 + 6 / 7) / 4)


def test_consistency_trains_through_the_warmup_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    # B2: with consistency_warmup=False only the similarity and norm terms wait.
    torch.manual_seed(0)
    model = BGC(warmup_epochs_loc=2, **{**AUTHORS, "drop_prob": 1.0}, **TINY)
    batch = make_batch()
    monkeypatch.setattr(BGC, "current_epoch", property(lambda self: 1))
    total, terms = model.loss(batch)
    assert terms["cons"].requires_grad and not terms["sim"].requires_grad and not terms["norm"].requires_grad
    assert total.item() == pytest.approx((terms["cls"] + 2.0 * terms["cons"]).item())
    assert terms["cons"].item() > 0
    # The two-pass term by hand: ResNet-10's drop point is before layer4, every candidate dropped (p = 1).
    first, rest = model.backbone.body[:-1], model.backbone.body[-1]
    model.load_state_dict(model.state_dict())
    monkeypatch.setattr(BGC, "current_epoch", property(lambda self: 2))
    total2, terms2 = model.loss(batch)
    expected = terms2["cls"] + 0.5 * terms2["sim"] + 0.05 * terms2["norm"] + 2.0 * terms2["cons"]
    assert total2.item() == pytest.approx(expected.item())
    model.eval()  # batch statistics differ between the passes in training mode; compare in eval mode
    with torch.no_grad():
        before = first(batch["image"])
        keep = attentive_drop_mask(before, 0.8, 1.0)
        manual = (rest(before) - rest(before * keep)).abs().mean()
        assert model.loss(batch)[1]["cons"].item() == pytest.approx(manual.item())
        assert 0 < int((keep == 0).sum()) < keep.numel()


def test_two_pass_consistency_gradient_reaches_the_backbone_not_the_head() -> None:
    torch.manual_seed(0)
    model = BGC(warmup_epochs_loc=0, **{**AUTHORS, "drop_prob": 1.0}, **TINY)
    model.loss(make_batch())[1]["cons"].backward()
    assert all(p.grad is not None for p in model.backbone.parameters())
    assert sum(p.grad.abs().sum() for p in model.backbone.body[-1].parameters()) > 0
    assert model.head.weight.grad is None


def test_drop_consistency_needs_a_backbone_it_can_cut() -> None:
    from wsol.models import Backbone

    with pytest.raises(ValueError, match="last stage"):
        BGC(backbone=Backbone(nn.Identity(), out_channels=3, stride=1), num_classes=2, consistency="drop")


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
        ({"consistency": "erase"}, "consistency"),
        ({"drop_prob": 1.5}, "drop_prob"),
        ({"consistency_warmup": 0}, "consistency_warmup"),
        ({"norm_scaling": "sum"}, "norm_scaling"),
        ({"norm_regions": "cosine"}, "norm_regions"),
    ],
)
def test_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        BGC(**{**TINY, **kwargs})


# ---------------------------------------------------------------------------------- training
@pytest.mark.parametrize("options", [{}, AUTHORS], ids=["default", "authors"])
def test_training_step_and_checkpoint_round_trip(options: dict, tiny_datamodule, tmp_path) -> None:
    torch.manual_seed(0)
    model = BGC(warmup_epochs_loc=0, **TINY, **options)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    trainer = one_step_trainer(tmp_path, checkpoint_dir=tmp_path / "ckpt")
    trainer.fit(model, datamodule=tiny_datamodule)
    m = trainer.callback_metrics
    for name in ("train/loss", "train/cls", "train/sim", "train/norm", "train/cons"):
        assert torch.isfinite(m[name]), name
    weights = [options.get(k, 1.0) for k in ("lambda_sim", "lambda_norm", "lambda_cons")]
    expected = m["train/cls"] + sum(w * m[f"train/{k}"] for w, k in zip(weights, ("sim", "norm", "cons"), strict=True))
    assert m["train/loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters(), strict=True))
    path = tmp_path / "ckpt" / "last.ckpt"
    assert checkpoint_method(path) == "wsol.methods.bgc.BGC"
    restored = load_checkpoint(path)
    assert type(restored) is BGC and not restored.training
    assert restored.hparams.warmup_epochs_loc == 0 and restored.hparams.tau_drop == 0.8
    assert restored.hparams.consistency == options.get("consistency", "norm")
    x = make_batch()["image"]
    model.eval()
    with torch.no_grad():
        assert torch.equal(restored.cams(x), model.cams(x))
