"""Post-hoc CAM methods: equalities on GAP-linear models, shapes, hooks, gradients, registry."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import Tensor, nn

from wsol.cams import CAMInputs, CAMMethod, create_cam, list_cams, minmax_cams, register_cam
from wsol.cams.base import CAM_METHODS
from wsol.methods import CAM as CAMModule

SIDE = {"wsol_model": 4, "tv_model": 2, "timm_model": 2}  # feature-map side at 64 px (stride 16 / 32)
METHODS = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "eigencam"]


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def _minmax(maps: Tensor) -> Tensor:
    flat = maps.flatten(1)
    flat = flat - flat.amin(1, keepdim=True)
    return (flat / flat.amax(1, keepdim=True)).view_as(maps)


@pytest.fixture(scope="module")
def wsol_model() -> CAMModule:
    torch.manual_seed(0)
    return CAMModule(backbone="resnet10", backbone_kwargs={"width": 8, "stem_stride": 2}, num_classes=5).eval()


@pytest.fixture(scope="module")
def tv_model() -> nn.Module:
    torch.manual_seed(1)
    return torchvision.models.resnet18(num_classes=6).eval()


@pytest.fixture(scope="module")
def timm_model() -> nn.Module:
    import timm

    torch.manual_seed(2)
    return timm.create_model("resnet18", pretrained=False, num_classes=7).eval()


@pytest.fixture(scope="module")
def images() -> Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def test_registry_lists_every_method() -> None:
    assert sorted(list_cams()) == sorted([*METHODS, "native"])  # native: a training method's own maps
    with pytest.raises(ValueError, match="already registered"):
        register_cam("gradcam")(CAMMethod)
    with pytest.raises(KeyError, match="unknown CAM method"):
        create_cam("nope", nn.Linear(2, 2))


@pytest.mark.parametrize("model_name", ["wsol_model", "tv_model", "timm_model"])
def test_gradcam_equals_cam_after_relu_and_minmax(model_name: str, images: Tensor, request) -> None:
    model = request.getfixturevalue(model_name)
    cam = create_cam("cam", model)(images, "all").maps.flatten(0, 1)
    grad = create_cam("gradcam", model)(images, "all").maps.flatten(0, 1)
    side = SIDE[model_name]
    assert cam.shape == grad.shape == (3 * model(images[:1]).shape[1], side, side)
    assert (cam < 0).any()  # the ReLU matters: the raw CAM has negative evidence
    keep = grad.flatten(1).amax(1) > 0  # maps that are all non-positive have nothing to normalise
    torch.testing.assert_close(_minmax(torch.relu(cam[keep])), _minmax(grad[keep]), atol=1e-5, rtol=0)
    # On a GAP-linear model the gradient is spatially constant, so XGrad-CAM's weights equal Grad-CAM's.
    xgrad = create_cam("xgradcam", model)(images, "all").maps.flatten(0, 1)
    torch.testing.assert_close(_minmax(xgrad[keep]), _minmax(grad[keep]), atol=1e-5, rtol=0)


def test_default_target_layer_is_the_last_feature_map(wsol_model, tv_model, timm_model, images) -> None:
    assert create_cam("cam", wsol_model).target_layer(images) is wsol_model.backbone
    assert create_cam("cam", tv_model).target_layer(images) is tv_model.layer4
    assert create_cam("gradcam", timm_model).target_layer(images) is timm_model.layer4
    layer3 = create_cam("gradcam", tv_model, target_layer="layer3")
    assert layer3(images, 1).maps.shape == (3, 4, 4)
    with pytest.raises(KeyError, match="no layer 'layer9'"):
        create_cam("gradcam", tv_model, target_layer="layer9")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_name", ["wsol_model", "tv_model"])
def test_every_method_batched_finite_and_releases_hooks(method: str, model_name: str, images: Tensor, request) -> None:
    model = request.getfixturevalue(model_name)
    num_classes = model(images[:1]).shape[1]
    side = SIDE[model_name]
    kwargs = {}
    if method == "scorecam" and model_name == "tv_model":
        # One masked pass per channel: layer1's 64 channels keep this test fast (layer4 has 512).
        kwargs, side = {"target_layer": "layer1"}, 16
    extractor = create_cam(method, model, **kwargs)
    before = [p.detach().clone() for p in model.parameters()]
    labels = torch.tensor([1, 0, 2])
    one = extractor(images, labels)
    assert one.maps.shape == (3, side, side) and one.logits.shape == (3, num_classes)
    assert torch.isfinite(one.maps).all() and not one.maps.requires_grad
    assert one.maps.abs().sum() > 0
    every = extractor(images, "all")
    assert every.maps.shape == (3, num_classes, side, side) and torch.isfinite(every.maps).all()
    torch.testing.assert_close(every.maps[torch.arange(3), labels], one.maps, atol=1e-5, rtol=1e-5)
    if method != "scorecam":  # same code path as "all"; Score-CAM's masked passes make it slow
        several = extractor(images, torch.tensor([[1, 2], [0, 2], [2, 1]]))
        assert several.maps.shape == (3, 2, side, side)
        torch.testing.assert_close(several.maps[:, 0], one.maps, atol=1e-5, rtol=1e-5)
        predicted = extractor(images)  # None: the top-1 class
        top1 = every.maps[torch.arange(3), one.logits.argmax(1)]
        torch.testing.assert_close(predicted.maps, top1, atol=1e-5, rtol=1e-5)
    assert _hooks(model) == 0
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


class _Exploding(nn.Module):
    """A classifier whose forward raises after the target layer ran."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        self.backbone(x)
        raise RuntimeError("boom")


@pytest.mark.parametrize("method", METHODS)
def test_hooks_released_when_the_forward_raises(method: str) -> None:
    model = _Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        create_cam(method, model)(torch.randn(2, 3, 8, 8), 0)
    assert _hooks(model) == 0


@pytest.mark.parametrize("method", METHODS)
def test_differentiable_maps_pass_gradients_to_weights_and_images(method: str, wsol_model, images) -> None:
    x = images.clone().requires_grad_(True)
    targets = torch.tensor([1, 0, 2])
    result = create_cam(method, wsol_model)(x, targets, differentiable=True)
    assert result.maps.requires_grad and result.logits.requires_grad
    loss = minmax_cams(result.maps, size=(64, 64)).mean() + result.maps.pow(2).mean()
    loss.backward()
    stem = wsol_model.backbone.body[0].weight.grad
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert stem is not None and stem.abs().sum() > 0
    wsol_model.zero_grad(set_to_none=True)
    # Same values as the detached path, which starts autograd at the target layer only.
    detached = create_cam(method, wsol_model)(images, targets).maps
    torch.testing.assert_close(result.maps.detach(), detached, atol=1e-5, rtol=1e-4)


def test_gradient_methods_work_under_inference_mode_and_frozen_weights(tv_model, images) -> None:
    expected = create_cam("gradcampp", tv_model)(images, 2).maps
    with torch.inference_mode():
        inside = create_cam("gradcampp", tv_model)(images.clone(), torch.tensor([2, 2, 2])).maps
    torch.testing.assert_close(inside, expected)
    for p in tv_model.parameters():
        p.requires_grad_(False)
    try:
        frozen = create_cam("gradcampp", tv_model)(images, 2).maps
    finally:
        for p in tv_model.parameters():
            p.requires_grad_(True)
    torch.testing.assert_close(frozen, expected)


def test_layercam_keeps_positive_classifier_weights_only(wsol_model, images) -> None:
    # GAP-linear: g_k = w_k / (h w) everywhere, so LayerCAM = ReLU(sum_k ReLU(w_k) A_k) / (h w).
    target = 3
    w = wsol_model.head.weight.flatten(1)[target]
    feats = wsol_model.features(images).detach()
    expected = torch.relu(torch.einsum("c,bchw->bhw", torch.relu(w), feats)) / 16
    got = create_cam("layercam", wsol_model)(images, target).maps
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_gradcampp_matches_its_closed_form(wsol_model, images) -> None:
    target = 1
    w = wsol_model.head.weight.flatten(1)[target]
    feats = wsol_model.features(images).detach()
    g = (w / 16)[None, :, None, None].expand_as(feats)
    alpha = g**2 / (2 * g**2 + feats.sum((2, 3), keepdim=True) * g**3)
    weights = (alpha * torch.relu(g)).sum((2, 3))
    expected = torch.relu(torch.einsum("bc,bchw->bhw", weights, feats))
    got = create_cam("gradcampp", wsol_model)(images, target).maps
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_scorecam_weights_are_masked_input_probabilities(wsol_model, images) -> None:
    x = images[:1]
    feats = wsol_model.features(x).detach()
    up = torch.nn.functional.interpolate(feats, size=(64, 64), mode="bilinear", align_corners=False)[0]
    weights = []
    for mask in up:
        if mask.max() == mask.min():
            weights.append(torch.tensor(0.0))
            continue
        mask = (mask - mask.min()) / (mask.max() - mask.min())
        weights.append(wsol_model(x * mask).softmax(1)[0, 2])
    expected = torch.relu(torch.einsum("c,chw->hw", torch.stack(weights), feats[0]))
    got = create_cam("scorecam", wsol_model, batch_size=7)(x, 2).maps[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_eigencam_recovers_a_rank_one_map() -> None:
    u = torch.rand(2, 16) + 0.1  # spatial pattern per image
    v = torch.rand(2, 5) + 0.1  # channel loadings
    acts = torch.einsum("bn,bc->bcn", u, v).reshape(2, 5, 4, 4)
    inputs = CAMInputs(acts, None, torch.zeros(2, dtype=torch.long), torch.zeros(2, 3), torch.zeros(2, 3, 8, 8))
    weights = create_cam("eigencam", nn.Linear(1, 1)).weights(inputs)
    maps = torch.einsum("bc,bchw->bhw", weights, acts).flatten(1)
    assert (maps > 0).all()  # the sign is fixed towards the activations
    torch.testing.assert_close(maps / maps.norm(dim=1, keepdim=True), u / u.norm(dim=1, keepdim=True))


@pytest.mark.parametrize("shape", [(3, 49, 64), (3, 100, 8)])  # hw <= C and hw > C take different routes
def test_eigencam_vector_is_the_first_right_singular_vector(shape: tuple[int, int, int]) -> None:
    from wsol.cams.eigencam import _first_right_singular_vector

    a = torch.rand(shape, generator=torch.Generator().manual_seed(4))
    expected = torch.linalg.svd(a.double(), full_matrices=False).Vh[:, 0]
    got = _first_right_singular_vector(a).double()
    torch.testing.assert_close(got.abs(), expected.abs(), atol=1e-5, rtol=0)
    torch.testing.assert_close((got * expected).sum(1).abs(), torch.ones(shape[0], dtype=torch.float64))


def test_cam_needs_a_gap_linear_head() -> None:
    mlp = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 8),
        nn.Linear(8, 3),
    )
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="use a gradient method"):
        create_cam("cam", mlp)(x, 0)
    # Gradient methods need no such head; the last spatial map here is the 2x2 pool (as VGG's avgpool).
    assert create_cam("gradcam", mlp)(x, 0).maps.shape == (2, 2, 2)


def test_target_validation(tv_model, images) -> None:
    extractor = create_cam("cam", tv_model)
    with pytest.raises(ValueError, match=r"must lie in \[0, 5\]"):
        extractor(images, 6)
    with pytest.raises(ValueError, match="do not fit a batch of 3"):
        extractor(images, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="targets must be"):
        extractor(images, "every")


def test_a_new_method_is_one_small_subclass(wsol_model, images) -> None:
    class GradTimesActivation(CAMMethod):
        def weights(self, inputs: CAMInputs) -> Tensor:
            return inputs.gradients.abs()

    try:
        register_cam("abs_grad")(GradTimesActivation)
        maps = create_cam("abs_grad", wsol_model)(images, 0).maps
    finally:
        CAM_METHODS.remove("abs_grad")
    assert maps.shape == (3, 4, 4) and (maps >= 0).all() and maps.sum() > 0


def test_minmax_cams_range_and_shape() -> None:
    maps = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = minmax_cams(maps, size=(8, 8))
    assert out.shape == (2, 3, 8, 8)
    flat = out.flatten(2)
    torch.testing.assert_close(flat.amin(2), torch.zeros(2, 3))
    torch.testing.assert_close(flat.amax(2), torch.ones(2, 3))
    out.sum().backward()
    assert maps.grad is not None


@pytest.mark.parametrize(("normalization", "percentile"), [("minmax", 0.6), ("max", 0.6), ("pas", 0.6), ("ivr", 0.2)])
def test_score_batch_normalises_the_upsampled_maps_as_asked(wsol_model, images, normalization, percentile) -> None:
    import numpy as np

    from wsol.cams.runner import score_batch
    from wsol.metrics import prepare_scoremaps_numpy

    batch = {"image": images, "label": torch.tensor([1, 0, 4])}
    extractor = create_cam("gradcam", wsol_model)
    scored = score_batch(extractor, batch, torch.arange(5), 64, normalization=normalization, percentile=percentile)
    raw = extractor(images, batch["label"]).maps.numpy()
    # The torch pipeline against the reference's own cv2 one: bicubic float64, then the rule.
    expected = prepare_scoremaps_numpy(raw, (64, 64), normalization, percentile)
    np.testing.assert_allclose(scored.scoremaps, expected, rtol=0, atol=1e-12)
    assert scored.scoremaps.max() == 1.0 and scored.scoremaps.min() == 0.0
    minmax = score_batch(extractor, batch, torch.arange(5), 64).scoremaps
    assert (normalization == "minmax") == np.array_equal(scored.scoremaps, minmax)
    with pytest.raises(ValueError, match="normalization must be one of"):
        score_batch(extractor, batch, torch.arange(5), 64, normalization="sigmoid")


@pytest.mark.parametrize("name", ["FSL", "ACoL", "BAS", "SEAM", "CAM"])
def test_native_maps_are_the_methods_own(name):
    import wsol.methods
    from wsol.cams import create_cam

    torch.manual_seed(0)
    model = getattr(wsol.methods, name)(num_classes=3, backbone_kwargs={"width": 8, "stem_stride": 2}).eval()
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([2, 0])
    native = create_cam("native", model)
    result = native(images, targets=labels)
    with torch.no_grad():
        expected = model.cams(images, labels)
        logits, every = model.forward_with_cams(images)
    torch.testing.assert_close(result.maps, expected)
    torch.testing.assert_close(result.logits, logits)
    if name != "ACoL":  # ACoL's map of a class depends on erasing by that class
        torch.testing.assert_close(native(images, targets="all").maps, every)


def test_native_needs_a_training_method():
    from torchvision.models import resnet18

    from wsol.cams import create_cam

    with pytest.raises(ValueError, match="'native' maps need a wsol training method"):
        create_cam("native", resnet18(num_classes=3).eval())(torch.randn(1, 3, 32, 32))
