"""PuzzleMix and AutoMix: masks, label weights, transport, seeds, λ tracking, a Trainer step, YAML and the study."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_DEMO, one_step_trainer
from hypothesis import given, settings
from hypothesis import strategies as st

from wsol.augment import AutoMix, PuzzleMix, create_mixer, list_mixers
from wsol.augment.automix import momentum_at
from wsol.augment.block_transport import grid_cost, move_blocks, transport_plans
from wsol.augment.puzzle_labels import block_masks, integer_energies, label_energies, label_prior
from wsol.methods import CAM, MixUpCAM, load_checkpoint, load_model

FAST = settings(max_examples=15, deadline=None)
NET = {"backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 8}, "num_classes": 3}


def one_hot(b: int, k: int) -> torch.Tensor:
    return torch.eye(k)[torch.arange(b) % k]


def peaked_saliency(b: int, h: int, w: int, seed: int) -> torch.Tensor:
    """One bright square per image at a random place, over faint noise."""
    g = torch.Generator().manual_seed(seed)
    sal = 0.01 * torch.rand(b, h, w, generator=g)
    for i in range(b):
        y, x = int(torch.randint(h // 2 + 1, (), generator=g)), int(torch.randint(w // 2 + 1, (), generator=g))
        sal[i, y : y + h // 2, x : x + w // 2] += 1.0
    return sal


def system_with(mixer, cls=CAM, seed: int = 0):
    torch.manual_seed(seed)
    return cls(**NET, mixer=mixer, scale_lr=False).train()


def test_both_are_registered_and_need_the_network() -> None:
    assert {"puzzlemix", "automix"} <= set(list_mixers())
    assert isinstance(create_mixer("puzzlemix", seed=0), PuzzleMix)
    images, targets = torch.randn(2, 3, 16, 16), one_hot(2, 2)
    for mixer in (PuzzleMix(seed=0), AutoMix(seed=0)):
        with pytest.raises(TypeError, match="mix_batch"):
            mixer(images, targets)
    with pytest.raises(ValueError, match="divides"):
        PuzzleMix(block_counts=(16,)).block_count(24, 24)
    with pytest.raises(ValueError, match="feature_layer 'layer3'"):
        CAM(**NET, mixer=AutoMix(feature_layer="layer3"))


# ------------------------------------------------------------------------------------------------- PuzzleMix
def test_label_prior_is_the_binomial() -> None:
    np.testing.assert_allclose(np.exp(-label_prior(0.5, 3)), [0.25, 0.5, 0.25], atol=1e-7)
    np.testing.assert_allclose(np.exp(-label_prior(0.8, 2)), [0.8, 0.2], atol=1e-7)


def test_hand_case_each_image_keeps_its_salient_half() -> None:
    # 2x2 blocks; image a's saliency fills the left column, b's the right one; no colour term, lam 0.5.
    sal_a = torch.tensor([[[0.25, 0.0], [0.25, 0.0]]])
    sal_b = torch.tensor([[[0.0, 0.25], [0.0, 0.25]]])
    images = torch.rand(1, 3, 8, 8)
    # Label a on the left costs its prior 0.2/4 * -log 0.25 = 0.069; the half label 0.125 + 0.035; b 0.25 + 0.069.
    masks = block_masks(sal_a * 2, sal_b * 2, images, images, 0.5, 3, beta=1.2, gamma=0.0, eta=0.2, neigh=4)
    assert masks.tolist() == [[[1.0, 0.0], [1.0, 0.0]]]
    mixer = PuzzleMix(seed=0, block_counts=(2,), transport=False, gamma=0.0)
    mixer.sample_beta = lambda *a: 0.5  # type: ignore[method-assign]
    a, b = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)
    sal = torch.zeros(2, 8, 8)
    sal[0, :, :4], sal[1, :, 4:] = 1.0, 1.0
    out = mixer.mix_saliency(torch.cat([a, b]), one_hot(2, 2), torch.tensor([1, 0]), sal)
    assert (out.images[0, :, :, :4] == 0).all() and (out.images[0, :, :, 4:] == 1).all()
    assert out.lam.tolist() == [0.5, 0.5] and out.targets[0].tolist() == [0.5, 0.5]


def test_a_block_holding_all_of_an_images_saliency_keeps_that_image_without_overflow() -> None:
    # 8x8 blocks; image b's saliency all in block (3, 5), image a's spread evenly. Showing a there would lose all of
    # b's saliency: at the solver's float precision that cost (~6.4e9) overflowed 32-bit ints (undefined labels).
    n = 8
    sal_a = torch.full((1, n, n), 1.0 / n**2)
    sal_b = torch.zeros(1, n, n)
    sal_b[0, 3, 5] = 1.0
    images = torch.rand(1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in cast" would fail here
        masks = block_masks(sal_a, sal_b, images, images.clone(), 0.5)
    assert masks[0, 3, 5] == 0.0  # b's one salient block shows b
    assert (masks[0] == 1.0).sum() >= n * n // 4  # and a is shown elsewhere (its saliency is everywhere)
    unary, pairwise, cost_v, cost_h = label_energies(sal_a, sal_b, images, images.clone(), 0.5, 3, 1.2, 0.5, 0.2, 4)
    unary, cost_v, cost_h = unary[0], cost_v[0], cost_h[0]
    u, smooth, v, h = integer_energies(unary, pairwise, cost_v, cost_h)
    assert all(x.dtype == np.int32 for x in (u, smooth, v, h))
    assert u.max() == 10_000_000 and u.min(axis=-1).max() == 0  # largest term at GCO's safe size; per block min 0
    assert smooth.tolist() == [[0, 1, 4], [1, 0, 1], [4, 1, 0]]  # (k - l)^2: the squared label distance times 4
    # One scale for every term: the ratio of a unary difference to an edge weight survives the conversion.
    shifted = unary - unary.min(axis=-1, keepdims=True)
    assert u.max() / v.max() == pytest.approx(shifted.max() / cost_v.max() * 4, rel=1e-4)
    with pytest.raises(ValueError, match="unary holds NaN"):
        integer_energies(np.full_like(unary, np.nan), pairwise, cost_v, cost_h)


@FAST
@given(seed=st.integers(0, 2**31), b=st.integers(2, 5), h=st.sampled_from([16, 32, 48]), w=st.sampled_from([16, 32]))
def test_puzzlemix_masks_and_label_weights(seed, b, h, w) -> None:
    images, targets = torch.randn(b, 3, h, w), one_hot(b, 3)
    mixer = PuzzleMix(seed=seed)
    index = mixer.draw_pairing(images, targets)
    out = mixer.mix_saliency(images, targets, index, peaked_saliency(b, h, w, seed))
    assert ((out.mask >= 0) & (out.mask <= 1)).all()
    assert set(out.mask.unique().tolist()) <= {0.0, 0.5, 1.0}  # three labels
    torch.testing.assert_close(out.lam, out.mask.mean(dim=(1, 2, 3)))
    torch.testing.assert_close(out.targets, out.lam[:, None] * targets + (1 - out.lam[:, None]) * targets[index])
    # Every pixel of a fully shown block is a pixel of its image, moved by the transport: same multiset per block.
    for i in range(b):
        shown_a = out.mask[i, 0] == 1
        if shown_a.any():
            assert torch.isin(out.images[i][:, shown_a], images[i]).all()


@FAST
@given(seed=st.integers(0, 2**31), n=st.sampled_from([2, 4, 8]), eps=st.floats(0.0, 2.0))
def test_transport_is_a_permutation_of_blocks_within_each_image(seed, n, eps) -> None:
    g = torch.Generator().manual_seed(seed)
    sal = torch.rand(3, n, n, generator=g) ** 4
    sal = sal / sal.sum(dim=(1, 2), keepdim=True)
    shown = (torch.rand(3, n, n, generator=g) > 0.5).float()
    dest = transport_plans(sal, shown, eps)
    assert all(sorted(row.tolist()) == list(range(n * n)) for row in dest)
    # Each block of constant value v moves whole: the output holds the same blocks, at their destinations.
    values = torch.randperm(n * n, generator=g).float()
    images = values.view(1, 1, n, 1, n, 1).expand(3, 2, n, 3, n, 3).reshape(3, 2, 3 * n, 3 * n)
    moved = move_blocks(images, dest, n)
    for i in range(3):
        placed = moved[i, 0, ::3, ::3].flatten()
        assert placed[torch.as_tensor(dest[i])].tolist() == values.tolist()


def test_transport_hand_case() -> None:
    # 2x2 grid: all saliency on block 0 (top left), only block 3 (bottom right) shown. Moving 0 to 3 costs
    # eps * C(0, 3) = 2 eps for it and at least eps for the block it displaces, and gains 1.
    sal = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    shown = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
    assert grid_cost(2)[0, 3] == 2.0 and grid_cost(2)[0, 1] == 1.0
    assert transport_plans(sal, shown, 0.8)[0].tolist() == [0, 1, 2, 3]  # 1.6 + 0.8 > 1: stays
    assert transport_plans(sal, shown, 0.2)[0][0] == 3  # 0.4 + 0.2 < 1: moves into view


def test_puzzlemix_through_a_method_same_seed_same_masks() -> None:
    system = system_with(None)
    images, targets = torch.randn(4, 3, 32, 32), one_hot(4, 3)
    outs = [PuzzleMix(seed=seed).mix_batch(system, images, targets) for seed in (5, 5, 6)]
    torch.testing.assert_close(outs[0].mask, outs[1].mask, rtol=0, atol=0)
    torch.testing.assert_close(outs[0].images, outs[1].images, rtol=0, atol=0)
    assert not torch.equal(outs[0].images, outs[2].images)
    # The clean loss keeps its graph (it trains the network in the same backward); clean_lam 0 adds nothing.
    clean = outs[0].losses["puzzlemix_clean"]
    assert clean.requires_grad and math.isfinite(float(clean))
    assert PuzzleMix(seed=5, clean_lam=0.0).mix_batch(system, images, targets).losses == {}
    assert system.training and all(m.training for m in system.net.modules())


# --------------------------------------------------------------------------------------------------- AutoMix
def test_momentum_schedule() -> None:
    assert momentum_at(0.0, 0.99, 0.999) == pytest.approx(0.99)
    assert momentum_at(0.5, 0.99, 0.999) == pytest.approx(0.9945)
    assert momentum_at(1.0, 0.99, 0.999) == pytest.approx(0.999)


@pytest.mark.slow  # four methods built and mixed: about 3 s
def test_automix_masks_label_weights_and_seeds() -> None:
    images, targets = torch.randn(6, 3, 32, 32), one_hot(6, 3)
    outs = [AutoMix(seed=seed).mix_batch(system_with(AutoMix(seed=seed)), images, targets) for seed in (1, 1, 2)]
    out = outs[0]
    assert out.mask.shape == (6, 1, 32, 32) and ((out.mask >= 0) & (out.mask <= 1)).all()
    torch.testing.assert_close(out.lam, out.mask.mean(dim=(1, 2, 3)))
    torch.testing.assert_close(out.targets, out.lam[:, None] * targets + (1 - out.lam[:, None]) * targets[out.index])
    torch.testing.assert_close(out.images, out.mask * images + (1 - out.mask) * images[out.index])
    torch.testing.assert_close(outs[1].mask, out.mask, rtol=0, atol=0)
    assert not torch.equal(outs[2].images, out.images)
    assert set(out.losses) == {"automix_block", "automix_mask", "automix_clean"}
    # Near lam 0 or 1 the network gets plain MixUp: a constant mask.
    mixer = AutoMix(seed=1, lam_margin=0.49)
    flat = mixer.mix_batch(system_with(mixer), images, targets)
    assert flat.mask.unique().numel() == 1


def test_automix_encoder_follows_the_network() -> None:
    mixer = AutoMix(seed=0)
    system = system_with(mixer)
    encoder = system.mix_modules.encoder
    assert not any(p.requires_grad for p in encoder.parameters())
    with torch.no_grad():
        for p in system.net.parameters():
            p.add_(1.0)
    before = [p.clone() for p in encoder.parameters()]
    system.mix_modules.follow(system.net, 0.75)
    for old, new, target in zip(before, encoder.parameters(), system.net.parameters(), strict=True):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * target)


@pytest.mark.slow  # 75 steps of the Mix Block: about 4 s on 2 quiet cores
def test_automix_mask_mean_tracks_lambda() -> None:
    mixer = AutoMix(alpha=1.0, seed=0, lam_margin=0.0, clean_weight=0.0, block_weight=0.0, mask_weight=1.0)
    system = system_with(mixer)
    images, targets = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)), one_hot(8, 3)
    block = system.mix_modules.mix_block
    flip = torch.arange(8).flip(0)

    def means() -> list[float]:
        with torch.no_grad():
            features = system.mix_modules.features(images)
            return [block(features, lam, flip, (32, 32)).mean().item() for lam in (0.3, 0.5, 0.7)]

    assert max(abs(m - 0.3) for m in means()[:1]) > 0.15  # untrained: about 0.5 whatever λ
    opt = torch.optim.SGD(block.parameters(), lr=0.1, momentum=0.9)
    for _ in range(75):
        loss = mixer.mix_batch(system, images, targets).extra_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
    got = means()
    assert got == sorted(got)
    assert all(abs(m - lam) <= 0.1 + 0.02 for m, lam in zip(got, (0.3, 0.5, 0.7), strict=True)), got


def test_automix_trains_its_block_on_a_batch_left_unmixed() -> None:
    mixer = AutoMix(prob=0.0, seed=0)
    system = system_with(mixer)
    images, targets = torch.randn(4, 3, 32, 32), one_hot(4, 3)
    out = mixer.mix_batch(system, images, targets)
    assert out.images is images and out.mask is None and torch.equal(out.lam, torch.ones(4))
    assert set(out.losses) == {"automix_block", "automix_mask"}  # no clean term: the network's batch is clean
    out.extra_loss().backward()
    block = list(system.mix_modules.mix_block.parameters())
    assert block and all(p.grad is not None for p in block)  # DDP needs a gradient for every trainable parameter
    assert any(p.grad.abs().sum() > 0 for p in block)


@pytest.mark.slow  # two gloo ranks, four steps: about 20 s
def test_automix_with_prob_below_one_trains_under_ddp_without_unused_parameters(tmp_path) -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("ddp_train_mixer.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # A rank waiting for a gradient that never comes hangs: the timeout turns that into a failure.
    done = subprocess.run([sys.executable, str(script), "2", str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=150)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2] and ranks[0]["steps"] == 4
    assert ranks[0]["block"] == ranks[1]["block"] and ranks[0]["net"] == ranks[1]["net"]  # gradients all-reduced


# ------------------------------------------------------------------------------------- training and configs
@pytest.mark.slow  # three one-step fits and their checkpoints: about 5 s
@pytest.mark.parametrize(
    ("cls", "mixer"), [(CAM, "puzzlemix"), (CAM, "automix"), (MixUpCAM, "automix"), (MixUpCAM, "puzzlemix")]
)
def test_one_trainer_step_and_checkpoint_round_trip(cls, mixer, tiny_datamodule, tmp_path) -> None:
    model = system_with(create_mixer(mixer, seed=0), cls)
    before = [p.detach().clone() for p in model.net.parameters()]
    trainer = one_step_trainer(tmp_path)
    trainer.fit(model, datamodule=tiny_datamodule)
    metrics = trainer.callback_metrics
    assert math.isfinite(float(metrics["train/loss"]))
    assert any(key.startswith(f"train/{mixer}_") for key in metrics)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.net.parameters(), strict=True))
    path = tmp_path / "step.ckpt"
    trainer.save_checkpoint(path)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for restored in (load_checkpoint(path), load_model(path)):  # built without the mixer: its modules left out
            torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)
    # Resuming with the mixer configured restores its modules exactly.
    resumed = system_with(create_mixer(mixer, seed=0), cls, seed=1)
    resumed.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    for key, value in model.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)
    if mixer == "automix":
        assert any(key.startswith("mix_modules.mix_block.") for key in model.state_dict())
        groups = model.parameter_groups()
        block_params = {id(p) for p in model.mix_modules.mix_block.parameters()}
        assert sum(id(p) in block_params for g in groups for p in g["params"]) == len(block_params)


@pytest.mark.slow  # two fast_dev_runs through LightningCLI
@pytest.mark.parametrize(
    ("class_path", "init_args"),
    [("wsol.augment.PuzzleMix", {"block_counts": [2, 4], "seed": 0}), ("wsol.augment.AutoMix", {"momentum": 0.99})],
)
def test_trains_from_a_yaml(class_path, init_args, tmp_path) -> None:
    from dataset_fixtures import write_tiny_imagenet

    from wsol.training.lightning_cli import train

    write_tiny_imagenet(tmp_path / "data", per_class=2)
    config = {
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "default_root_dir": str(tmp_path / "runs")},
        "model": {"class_path": "wsol.methods.CAM", "init_args": {
            "backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 8}, "lr": 0.1,
            "mixer": {"class_path": class_path, "init_args": init_args}}},
        "data": {"class_path": "wsol.data.WSOLDataModule", "init_args": {
            "dataset": "tiny_imagenet", "root": str(tmp_path / "data"), "image_size": 32, "batch_size": 4}},
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = train(["--config", str(path), "--trainer.fast_dev_run", "true"])
    assert cli.trainer.global_step == 1 and type(cli.model.mixer).__name__ == class_path.rsplit(".", 1)[1]
    assert math.isfinite(float(cli.trainer.callback_metrics["train/loss"]))


def test_study_rows_build_their_mixers() -> None:
    from wsol.study.grid import BASE_CONFIG, SMALL_DATA_METHODS, build_model, merge

    rows = {row.name: row for row in SMALL_DATA_METHODS}
    for name, cls in (("puzzlemix", PuzzleMix), ("automix", AutoMix)):
        assert rows[name].group == "mixing"
        config = merge(BASE_CONFIG, rows[name].variants["default"])
        model = build_model(config, num_classes=TINY_DEMO["num_classes"], seed=3)
        assert isinstance(model.mixer, cls) and model.mixer.seed == 3
    assert model.mix_modules is not None and model.mixer.momentum == 0.99
