"""Pseudo-mask math: label maps from hand-made CAM stacks, flip/scale averaging, class selection, PCM source."""

from __future__ import annotations

import pytest
import torch

from wsol.methods import CAM, SEAM
from wsol.models.pcm import relu_minmax
from wsol.wsss import SEAM_SCALES, cam_function, label_map, multiscale_cams, present_classes

TINY = {"backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 16}, "num_classes": 3}


def _stack() -> torch.Tensor:
    """Three normalised 2x4 class maps with known maxima per pixel."""
    return torch.tensor(
        [
            [[0.9, 0.1, 0.0, 0.2], [0.3, 0.0, 0.0, 0.1]],  # class 0
            [[0.2, 0.8, 0.1, 0.2], [0.3, 0.0, 0.0, 0.1]],  # class 1
            [[0.1, 0.7, 0.6, 0.2], [0.2, 0.0, 0.9, 0.1]],  # class 2
        ]
    )


def test_label_map_of_a_hand_made_stack():
    all_present = torch.ones(3, dtype=torch.bool)
    expected = torch.tensor([[1, 2, 3, 0], [1, 0, 3, 0]], dtype=torch.uint8)
    # Pixel (1, 0): classes 0 and 1 tie at 0.3 -> the first (class 0); 0.2 < 0.26 -> background.
    assert torch.equal(label_map(_stack(), all_present, bg_threshold=0.26), expected)
    # Class 1 absent: its pixel goes to class 2 (0.7), the next best present class.
    only_0_2 = torch.tensor([True, False, True])
    assert torch.equal(label_map(_stack(), only_0_2, 0.26), torch.tensor([[1, 3, 3, 0], [1, 0, 3, 0]]).byte())
    # A higher threshold turns the weaker pixels to background; a tie with the threshold is background.
    assert torch.equal(label_map(_stack(), all_present, 0.8), torch.tensor([[1, 0, 0, 0], [0, 0, 3, 0]]).byte())
    # Threshold 0: every pixel with a positive score is foreground; all-zero pixels stay background.
    assert torch.equal(label_map(_stack(), all_present, 0.0), torch.tensor([[1, 2, 3, 1], [1, 0, 3, 1]]).byte())


def test_ignore_band_between_two_thresholds():
    out = label_map(_stack(), torch.ones(3, dtype=torch.bool), bg_threshold=0.5, ignore_threshold=0.15)
    # Scores above 0.5 keep their class; (0.15, 0.5] become 255; <= 0.15 (and the zero pixel) background.
    assert out.tolist() == [[1, 2, 3, 255], [255, 0, 3, 0]]
    with pytest.raises(ValueError, match="below bg_threshold"):
        label_map(_stack(), torch.ones(3, dtype=torch.bool), bg_threshold=0.2, ignore_threshold=0.3)


def test_relu_minmax_of_combined_maps_is_seams_min_max_after_relu():
    maps = torch.tensor([[[-1.0, 0.0], [2.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])  # (K, H, W), no batch axis
    norm = relu_minmax(maps)
    eps = 1e-5
    # ReLU -> [0, 0, 2, 4], min 0, max 4: (x - 0 - eps) / (4 + eps), clipped at 0.
    assert torch.allclose(norm[0], torch.tensor([[0.0, 0.0], [(2 - eps) / (4 + eps), (4 - eps) / (4 + eps)]]))
    assert torch.equal(norm[1], torch.zeros(2, 2))  # an all-zero map stays zero


def test_present_classes_from_labels_or_prediction():
    logits = torch.tensor([2.0, -1.0, 0.5])
    assert present_classes(logits, [1]).tolist() == [False, True, False]
    assert present_classes(logits, None, multilabel=True, threshold=0.6).tolist() == [True, False, True]
    # No sigmoid score passes: the top class is kept, so every image has one.
    assert present_classes(logits, None, multilabel=True, threshold=0.99).tolist() == [True, False, False]
    assert present_classes(logits, None, multilabel=False).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="out of range"):
        present_classes(logits, [3])


def _mirror_net(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A position-aware map source: the maps depend on the column, so flipping matters."""
    cols = torch.linspace(0, 1, x.shape[-1])
    maps = torch.stack([x[:, 0] * cols, x[:, 1] * (1 - cols) ** 2], dim=1)
    return maps.mean(dim=(2, 3)), maps


def test_flip_averaging_is_invariant_to_flipping_the_input():
    torch.manual_seed(0)
    image = torch.randn(3, 20, 28)
    for scales in ((1.0,), SEAM_SCALES):
        logits, maps = multiscale_cams(_mirror_net, image, scales, flip=True)
        logits_f, maps_f = multiscale_cams(_mirror_net, image.flip(-1), scales, flip=True)
        assert maps.shape == (2, 20, 28)
        assert torch.allclose(maps_f, maps.flip(-1), atol=1e-5)
        assert torch.allclose(logits_f, logits, atol=1e-5)
    # Without the flipped pass the maps do change: the test above can fail.
    _, plain = multiscale_cams(_mirror_net, image, (1.0,), flip=False)
    _, plain_f = multiscale_cams(_mirror_net, image.flip(-1), (1.0,), flip=False)
    assert not torch.allclose(plain_f, plain.flip(-1), atol=1e-3)


def test_multiscale_average_of_a_scale_invariant_source():
    # Maps that are the input's first two channels: every scale gives back ~the input at full size.
    def identity(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, :2].mean(dim=(2, 3)), x[:, :2]

    image = torch.zeros(3, 16, 16)
    image[:2, 4:12, 4:12] = 1.0
    _, maps = multiscale_cams(identity, image, (1.0,), flip=True)
    assert torch.allclose(maps, image[:2])
    _, maps = multiscale_cams(identity, image, (0.5, 1.0, 2.0), flip=True, out_size=(16, 16))
    assert maps.shape == (2, 16, 16)
    assert maps[:, 8, 8].tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    assert maps[:, 0, 0].tolist() == pytest.approx([0.0, 0.0], abs=1e-4)
    with pytest.raises(ValueError, match="positive"):
        multiscale_cams(identity, image, (0.0,))


def test_real_models_maps_and_pcm_source():
    torch.manual_seed(0)
    cam = CAM(**TINY).eval()
    seam = SEAM(**TINY).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        logits, cams, refined = seam.net.seam_forward(x)
        assert torch.allclose(cam_function(seam, "pcm")(x)[1], refined[:, 1:])
        assert torch.allclose(cam_function(seam, "auto")(x)[1], refined[:, 1:])
        assert torch.allclose(cam_function(seam, "none")(x)[1], cams)
        assert torch.allclose(cam_function(cam, "auto")(x)[1], cam.forward_with_cams(x)[1])
        _, maps = multiscale_cams(cam_function(cam), x, (0.5, 1.0), flip=True, out_size=(40, 36))
    assert maps.shape == (3, 40, 36) and torch.isfinite(maps).all()
    # Upsampling only the selected classes gives exactly those classes' maps.
    with torch.no_grad():
        picked = multiscale_cams(cam_function(cam), x, (0.5, 1.0), True, (40, 36), select=lambda lg: [2, 0])[1]
    assert picked.shape == (2, 40, 36) and torch.allclose(picked, maps[[2, 0]], atol=1e-6)
    with pytest.raises(ValueError, match="SEAM"):
        cam_function(cam, "pcm")
