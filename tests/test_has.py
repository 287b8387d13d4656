"""Tests of Hide-and-Seek: the hiding rule on hand-checked tensors, the loss wiring and one real training step."""

from __future__ import annotations

import pytest
import torch
from conftest import fit_one_step_and_reload
from torch import nn

from wsol.augment import MixUp
from wsol.methods.cam import CAM
from wsol.methods.has import HaS, hide_patches
from wsol.models import Backbone


def pointwise(cls: type = HaS, **kwargs) -> nn.Module:
    """A method over a 1x1-conv backbone (fast, and every pixel is seen by the head)."""
    torch.manual_seed(0)
    backbone = Backbone(nn.Conv2d(3, 4, 1), out_channels=4, stride=1)
    return cls(backbone=backbone, num_classes=3, batch_size=2, **kwargs)


def batch(b: int = 2, size: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    labels = torch.arange(b) % 3
    return {"image": torch.randn(b, 3, size, size, generator=g) + 3.0, "target": torch.eye(3)[labels]}


# ------------------------------------------------------------------------------------- hiding rule
def test_hide_patches_grid_2_on_4x4_hand_checked() -> None:
    image = torch.arange(1.0, 49.0).view(1, 3, 4, 4)
    # Seed 0 draws [[0.4963, 0.7682], [0.0885, 0.1320]] for the 2x2 cells: all but the top-right are < 0.5.
    out = hide_patches(image, 2, 0.5, torch.Generator().manual_seed(0))
    keep = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    torch.testing.assert_close(out, torch.where(keep, image, torch.zeros(())))
    assert torch.equal(image, torch.arange(1.0, 49.0).view(1, 3, 4, 4))  # input untouched


def test_hide_patches_non_divisible_size_cells_cover_the_image() -> None:
    image = torch.full((1, 1, 5, 3), 7.0)
    # 5x3 px with 2 px cells: 3 rows of cells (last 1 px high) x 2 columns (last 1 px wide).
    # Seed 1 draws [[.7576, .2793], [.4031, .7347], [.0293, .7999]]: cells (0,1), (1,0), (2,0) are hidden.
    out = hide_patches(image, 2, 0.5, torch.Generator().manual_seed(1))
    expected = 7.0 * torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]], dtype=torch.float)
    torch.testing.assert_close(out[0, 0], expected)
    # A grid larger than the image is one cell covering all of it.
    assert torch.equal(hide_patches(image, 8, 1.0), torch.zeros_like(image))


def test_hide_patches_per_image_draws_and_fill() -> None:
    images = torch.ones(2, 2, 2, 2)
    # Seed 2 draws image 0: [[.6147, .3810], [.6371, .4745]], image 1: [[.7136, .6190], [.4425, .0958]].
    out = hide_patches(images, 1, 0.5, torch.Generator().manual_seed(2), fill=-1.0)
    expected = torch.tensor([[[1.0, -1.0], [1.0, -1.0]], [[1.0, 1.0], [-1.0, -1.0]]])
    torch.testing.assert_close(out, expected[:, None].expand(2, 2, 2, 2))


def test_hide_patches_drop_rate_edges() -> None:
    images = torch.randn(3, 3, 7, 9)
    assert torch.equal(hide_patches(images, 3, 0.0), images)
    assert torch.equal(hide_patches(images, 3, 1.0), torch.zeros_like(images))
    with pytest.raises(ValueError, match="images"):
        hide_patches(images[0], 3, 0.5)


# --------------------------------------------------------------------------------------- method
def test_loss_sees_hidden_images_only_in_training_loss() -> None:
    model, cam, data = pointwise(has_drop_rate=1.0), pointwise(CAM), batch()
    cam.load_state_dict(model.state_dict())  # same weights; the state dicts are CAM's
    hidden = {**data, "image": torch.zeros_like(data["image"])}
    torch.testing.assert_close(model.loss(data)[0], cam.loss(hidden)[0])
    # Inference is untouched: the maps equal CAM's on the whole image.
    torch.testing.assert_close(model.cams(data["image"]), cam.cams(data["image"]))
    assert not torch.allclose(model.loss(data)[0], cam.loss(data)[0])
    kept = pointwise(has_drop_rate=0.0)
    torch.testing.assert_close(kept.loss(data)[0], cam.loss(data)[0])


def test_seeded_hiding_is_reproducible_and_matches_hide_patches() -> None:
    data = batch()
    a, b = pointwise(seed=3, has_grid_size=2), pointwise(seed=3, has_grid_size=2)
    assert torch.equal(a.loss(data)[0], b.loss(data)[0])
    expected = hide_patches(data["image"], 2, 0.5, torch.Generator().manual_seed(3))
    ref = pointwise(seed=3, has_grid_size=2)
    assert torch.equal(ref.hide(data["image"]), expected)
    assert not torch.equal(ref.hide(data["image"]), expected)  # the stream moves on


def test_mixer_is_applied_after_hiding() -> None:
    data = batch()
    model = pointwise(seed=4, has_grid_size=2, mixer=MixUp(alpha=1.0, pairing="flip", seed=0))
    cam = pointwise(CAM)
    hidden = hide_patches(data["image"], 2, 0.5, torch.Generator().manual_seed(4))
    mixed = MixUp(alpha=1.0, pairing="flip", seed=0)(hidden, data["target"])
    expected = cam.classification_loss(cam(mixed.images), mixed.targets)
    torch.testing.assert_close(model.loss(data)[0], expected)
    unmixed = cam.classification_loss(cam(hidden), data["target"])
    assert not torch.allclose(expected, unmixed)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"has_grid_size": 0}, "has_grid_size"),
        ({"has_grid_size": 2.5}, "has_grid_size"),
        ({"has_grid_size": True}, "has_grid_size"),
        ({"has_drop_rate": -0.1}, "has_drop_rate"),
        ({"has_drop_rate": 1.5}, "has_drop_rate"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        HaS(backbone="resnet10", num_classes=3, **kwargs)


def test_one_training_step_and_checkpoint_round_trip(tiny_datamodule, tmp_path) -> None:
    torch.manual_seed(0)
    model = HaS(backbone="resnet10", backbone_kwargs={"stem_stride": 2, "width": 8}, num_classes=3, seed=0)
    restored = fit_one_step_and_reload(model, tiny_datamodule, tmp_path)
    assert restored.hparams.has_grid_size == 4 and restored.hparams.has_drop_rate == 0.5
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(restored.cams(x), model.cams(x))
