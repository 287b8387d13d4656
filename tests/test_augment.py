"""Tests of the batch mixers in ``wsol.augment``."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wsol.augment import (
    CutMix,
    FMix,
    GMix,
    HMix,
    Mixer,
    MixUp,
    ResizeMix,
    create_mixer,
    list_mixers,
    register_mixer,
)
from wsol.augment.fmix import binarise_mask, low_frequency_image
from wsol.augment.hmix_gmix import gaussian_mask

ALL = ["cutmix", "fmix", "gmix", "hmix", "mixup", "resizemix"]
MASKED = ["cutmix", "fmix", "gmix", "hmix", "resizemix"]
FAST = settings(max_examples=20, deadline=None)


def constant_batch(b: int, h: int, w: int) -> torch.Tensor:
    """Sample i is the constant image i + 1, so every pixel tells which image it came from."""
    return (torch.arange(b, dtype=torch.float32) + 1).view(b, 1, 1, 1).expand(b, 3, h, w).clone()


def one_hot(b: int, k: int) -> torch.Tensor:
    return torch.eye(k)[torch.arange(b) % k]


def force_lam(mixer: Mixer, lam: float) -> Mixer:
    """Fix the Beta draw of a mixer (works under hypothesis, unlike the ``monkeypatch`` fixture)."""
    mixer.sample_beta = lambda *a: lam  # type: ignore[method-assign]
    return mixer


def test_registry() -> None:
    assert list_mixers() == sorted(ALL + ["automix", "puzzlemix"])  # the dynamic two: tests/test_dynamic_mixers.py
    assert isinstance(create_mixer("cutmix", alpha=0.5, seed=1), CutMix)
    assert create_mixer("hmix", ratio=0.3).ratio == 0.3
    with pytest.raises(ValueError, match="already registered"):
        register_mixer("mixup")(MixUp)
    with pytest.raises(KeyError, match="unknown mixer"):
        create_mixer("saliencymix")
    with pytest.raises(ValueError):
        MixUp(alpha=0.0)
    with pytest.raises(ValueError):
        MixUp(prob=1.5)
    with pytest.raises(ValueError):
        MixUp(pairing="shuffle")  # type: ignore[arg-type]


@FAST
@given(
    name=st.sampled_from(ALL),
    seed=st.integers(0, 2**31),
    b=st.integers(2, 9),
    h=st.integers(4, 40),
    w=st.integers(4, 40),
    alpha=st.floats(0.1, 4.0),
    pairing=st.sampled_from(["permute", "flip"]),
)
def test_targets_are_convex_label_weights(name, seed, b, h, w, alpha, pairing) -> None:
    images, targets = torch.randn(b, 3, h, w), one_hot(b, 5)
    out = create_mixer(name, alpha=alpha, seed=seed, pairing=pairing)(images, targets)
    assert out.images.shape == images.shape and out.targets.shape == targets.shape
    assert out.lam.shape == (b,) and out.index.shape == (b,) and out.index.dtype == torch.long
    assert ((out.lam >= 0) & (out.lam <= 1)).all()
    assert ((out.targets >= 0) & (out.targets <= 1 + 1e-6)).all()
    torch.testing.assert_close(out.targets.sum(1), torch.ones(b))
    lam = out.lam.unsqueeze(1)
    torch.testing.assert_close(out.targets, lam * targets + (1 - lam) * targets[out.index])
    assert sorted(out.index.tolist()) == list(range(b))
    if pairing == "flip":
        assert out.index.tolist() == list(range(b - 1, -1, -1))
    if name == "mixup":
        assert out.mask is None
        torch.testing.assert_close(
            out.images, lam.view(b, 1, 1, 1) * images + (1 - lam.view(b, 1, 1, 1)) * images[out.index]
        )
    else:
        assert out.mask.shape == (b, 1, h, w)
        assert ((out.mask >= 0) & (out.mask <= 1)).all()
        # lam is the fraction of image a actually kept, i.e. the mask mean (docs/methods.md §14.3).
        torch.testing.assert_close(out.mask.mean(dim=(1, 2, 3)), out.lam, atol=1e-5, rtol=0)
    if name in ("cutmix", "fmix", "gmix", "hmix"):
        expected = out.mask * images + (1 - out.mask) * images[out.index]
        torch.testing.assert_close(out.images, expected)


@FAST
@given(seed=st.integers(0, 2**31), h=st.integers(3, 50), w=st.integers(3, 50))
def test_cutmix_pasted_area_is_one_minus_lam(seed, h, w) -> None:
    b = 4
    images = constant_batch(b, h, w)
    out = CutMix(seed=seed, pairing="flip")(images, one_hot(b, 3))
    for i in range(b):
        from_b = (out.images[i, 0] == images[b - 1 - i, 0, 0, 0]).float().mean()
        assert math.isclose(from_b.item(), 1 - out.lam[i].item(), abs_tol=1e-6)
    # The pasted region is one axis-aligned box.
    rows = (out.mask[0, 0] == 0).any(1).nonzero().flatten()
    cols = (out.mask[0, 0] == 0).any(0).nonzero().flatten()
    if rows.numel():
        box = out.mask[0, 0, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert (box == 0).all()


def test_cutmix_box_clipped_at_border_recomputes_lam(monkeypatch) -> None:
    mixer = CutMix(seed=0, pairing="flip")
    force_lam(mixer, 0.75)  # nominal box 16x16 of 32x32
    monkeypatch.setattr(torch, "randint", lambda high, size, generator: torch.tensor(0))  # corner
    out = mixer(constant_batch(2, 32, 32), one_hot(2, 2))
    # Box centred on the corner keeps only its 8x8 quarter: lam = 1 - 64 / 1024.
    assert out.lam.tolist() == [1 - 64 / 1024] * 2
    assert (out.images[0, :, :8, :8] == 2).all() and (out.images[0, :, 8:, :] == 1).all()
    unclipped = CutMix(seed=0, pairing="flip", correct_lam=False)
    force_lam(unclipped, 0.75)
    assert unclipped(constant_batch(2, 32, 32), one_hot(2, 2)).lam.tolist() == [0.75, 0.75]


@FAST
@given(lam=st.floats(0.01, 0.99), ratio=st.floats(0.0, 1.0), seed=st.integers(0, 2**31), h=st.integers(4, 40))
def test_hmix_label_weight_is_lambda(lam, ratio, seed, h) -> None:
    mixer = force_lam(HMix(seed=seed, ratio=ratio), lam)
    images = torch.randn(4, 3, h, h + 3)
    out = mixer(images, one_hot(4, 4))
    torch.testing.assert_close(out.lam, torch.full((4,), lam), atol=1e-6, rtol=0)
    inside = out.mask[0, 0] == 0
    outside = ~inside
    lam_mix = out.mask[0, 0][outside].unique()
    assert lam_mix.numel() <= 1
    if inside.any():  # inside the box: pure image b
        torch.testing.assert_close(out.images[:, :, inside], images.flip(0)[:, :, inside])


def test_hmix_hand_case(monkeypatch) -> None:
    images = constant_batch(2, 16, 16)
    mixer = force_lam(HMix(seed=0, ratio=1.0), 0.5)
    monkeypatch.setattr(torch, "randint", lambda high, size, generator: torch.tensor(8))
    out = mixer(images, one_hot(2, 2))
    # Side int(16 * sqrt(0.5)) = 11, corners 8 -/+ 5: box [3, 13)^2 of 100 px, lam_cut = 156 / 256,
    # lam_mix = 0.5 / lam_cut; image 0 outside the box is lam_mix * 1 + (1 - lam_mix) * 2.
    lam_mix = 0.5 * 256 / 156
    assert (out.images[0, :, 3:13, 3:13] == 2).all()
    torch.testing.assert_close(out.images[0, :, 0, 0], torch.full((3,), 2 - lam_mix))
    assert out.lam.tolist() == pytest.approx([0.5, 0.5])
    mix = force_lam(HMix(seed=0, ratio=0.0), 0.3)
    out = mix(images, one_hot(2, 2))  # r = 0: MixUp, 0.3 * 1 + 0.7 * 2
    torch.testing.assert_close(out.images[0], torch.full((3, 16, 16), 1.7))


@FAST
@given(seed=st.integers(0, 2**31), h=st.integers(4, 48), w=st.integers(4, 48), alpha=st.floats(0.2, 3.0))
def test_gmix_label_weight_is_mask_mean(seed, h, w, alpha) -> None:
    out = GMix(seed=seed, alpha=alpha)(torch.randn(2, 3, h, w), one_hot(2, 2))
    torch.testing.assert_close(out.lam, out.mask.mean(dim=(1, 2, 3)), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.targets[:, 0], torch.stack([out.lam[0], 1 - out.lam[1]]))


@pytest.mark.parametrize(("h", "w", "lam"), [(128, 128, 0.1), (192, 320, 0.05), (64, 64, 0.02)])
def test_gaussian_mask_mean_is_lambda_away_from_borders(h, w, lam) -> None:
    m = gaussian_mask(h, w, lam, h // 2, w // 2)
    assert m.max().item() == 1.0
    assert abs(m.mean().item() - lam) < 2e-3
    # Truncated by a border, the kept weight is smaller, which is why GMix re-measures it.
    assert gaussian_mask(h, w, lam, 0, 0).mean().item() < lam / 3


def test_fmix_masks_binary_with_mean_lambda() -> None:
    h, w = 16, 24
    lams = []
    for reformulate, expected in ((False, 0.5), (True, 2 / 3)):
        mixer = FMix(seed=0, reformulate=reformulate)
        lams = []
        for _ in range(300):
            mask, lam = mixer.sample_mask(h, w)
            assert set(mask.unique().tolist()) <= {0.0, 1.0}
            # Exactly ceil or floor of lam * H * W pixels are kept.
            assert mask.sum().item() in (math.floor(lam * h * w), math.ceil(lam * h * w))
            lams.append(mask.mean().item())
        # Beta(1, 1) has mean 1/2, Beta(2, 1) (reformulated) 2/3.
        assert abs(sum(lams) / len(lams) - expected) < 0.04


def test_fmix_masks_are_low_frequency() -> None:
    g = torch.Generator().manual_seed(0)
    mask = binarise_mask(low_frequency_image(64, 64, 3.0, g), 0.5, 1.0)
    noise = binarise_mask(torch.rand(64, 64, generator=g), 0.5, 1.0)

    def transitions(m: torch.Tensor) -> float:
        return ((m[1:] != m[:-1]).float().mean() + (m[:, 1:] != m[:, :-1]).float().mean()).item()

    assert transitions(mask) < 0.1 < 0.4 < transitions(noise)


def test_fmix_soft_mask_keeps_mean() -> None:
    g = torch.Generator().manual_seed(1)
    soft = binarise_mask(low_frequency_image(20, 20, 3.0, g), 0.3, 1.0, max_soft=0.1)
    assert ((soft > 0) & (soft < 1)).any()
    assert abs(soft.sum().item() - 120) < 1e-3  # ceil(0.3 * 400)


def test_resizemix_pastes_resized_partner(monkeypatch) -> None:
    b, h, w = 3, 40, 40
    images = torch.zeros(b, 1, h, w)
    images[:, :, :, 20:] = 1.0  # left half 0, right half 1
    images += torch.arange(b).view(b, 1, 1, 1) * 10
    mixer = ResizeMix(seed=0, pairing="flip")
    monkeypatch.setattr(mixer, "uniform", lambda lo=0.0, hi=1.0: 0.5)
    out = mixer(images, one_hot(b, 3))
    rows = (out.mask[0, 0] == 0).any(1).nonzero().flatten()
    cols = (out.mask[0, 0] == 0).any(0).nonzero().flatten()
    y1, y2, x1, x2 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    assert 1 - out.lam[0].item() == pytest.approx((y2 - y1) * (x2 - x1) / (h * w))
    if (y2 - y1, x2 - x1) == (20, 20):  # unclipped: the whole partner, shrunk by tau = 0.5
        patch = out.images[0, 0, y1:y2, x1:x2]
        torch.testing.assert_close(patch, torch.nn.functional.interpolate(images[2:3], size=(20, 20))[0, 0])
    outside = out.mask[0, 0] == 1
    torch.testing.assert_close(out.images[0, 0][outside], images[0, 0][outside])


def test_resizemix_scale_in_scope() -> None:
    mixer = ResizeMix(seed=3)
    for _ in range(200):
        out = mixer(torch.randn(2, 3, 50, 50), one_hot(2, 2))
        assert 0.0 <= 1 - out.lam[0].item() <= 0.8**2 + 1e-6


@pytest.mark.parametrize("name", ALL)
def test_seeded_determinism_and_no_input_mutation(name) -> None:
    images, targets = torch.randn(6, 3, 20, 20), one_hot(6, 3)
    before = images.clone()
    a, b = create_mixer(name, seed=7), create_mixer(name, seed=7)
    for _ in range(3):
        oa, ob = a(images, targets), b(images, targets)
        assert torch.equal(oa.images, ob.images) and torch.equal(oa.index, ob.index)
        assert torch.equal(oa.lam, ob.lam)
    assert torch.equal(images, before)
    other = create_mixer(name, seed=8)(images, targets)
    assert not torch.equal(other.images, create_mixer(name, seed=7)(images, targets).images)


def test_unseeded_mixers_follow_the_global_seed() -> None:
    images, targets = torch.randn(6, 3, 8, 8), one_hot(6, 3)
    torch.manual_seed(123)
    first = CutMix()(images, targets)
    torch.manual_seed(123)
    second = CutMix()(images, targets)
    assert torch.equal(first.images, second.images) and torch.equal(first.index, second.index)


@pytest.mark.parametrize("name", ALL)
def test_multilabel_targets(name) -> None:
    targets = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    out = create_mixer(name, seed=0, pairing="flip")(torch.randn(4, 3, 16, 16), targets)
    lam = out.lam.unsqueeze(1)
    torch.testing.assert_close(out.targets, lam * targets + (1 - lam) * targets.flip(0))
    # Image 0 (classes 0, 1) is paired with image 3 (no class): both keep weight lam.
    assert out.targets[0, :2].tolist() == pytest.approx([out.lam[0].item()] * 2)
    # Images 1 and 2 share no class; image 1's class 1 gets lam, image 2's class 0 gets 1 - lam.
    assert out.targets[1].tolist() == pytest.approx([1 - out.lam[1].item(), out.lam[1].item(), out.lam[1].item()])
    both = torch.tensor([[1.0, 0.0]] * 2)  # a class present in both images stays 1
    torch.testing.assert_close(create_mixer(name, seed=0)(torch.randn(2, 3, 8, 8), both).targets, both)


@pytest.mark.parametrize("name", ALL)
def test_probability(name) -> None:
    images, targets = torch.randn(4, 3, 12, 12), one_hot(4, 2)
    out = create_mixer(name, prob=0.0, seed=0)(images, targets)
    assert out.images is images and out.targets is targets and out.mask is None
    assert out.lam.tolist() == [1.0] * 4 and out.index.tolist() == [0, 1, 2, 3]
    mixer = create_mixer(name, prob=0.5, seed=0, pairing="flip")
    mixed = sum(mixer(images, targets).index[0].item() == 3 for _ in range(400))
    assert 160 < mixed < 240


def test_dtype_and_single_sample() -> None:
    out = CutMix(seed=0)(torch.randn(4, 3, 8, 8, dtype=torch.float64), one_hot(4, 2).double())
    assert out.images.dtype == out.lam.dtype == out.mask.dtype == torch.float64
    single = MixUp(seed=0)(torch.randn(1, 3, 8, 8), one_hot(1, 2))
    assert single.lam.tolist() == [1.0]
    with pytest.raises(ValueError, match="expected images"):
        MixUp()(torch.randn(3, 8, 8), one_hot(3, 2))
