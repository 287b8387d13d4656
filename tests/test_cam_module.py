import pytest
import torch

from wsol.methods import CAM


@pytest.fixture
def model():
    torch.manual_seed(0)
    return CAM(backbone="resnet10", num_classes=4, backbone_kwargs={"stem_stride": 2}, batch_size=8).eval()


def test_cams_equal_weights_times_features(model):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        f = model.features(x)
        w, b = model.head.weight[:, :, 0, 0], model.head.bias
        manual = torch.einsum("kc,bchw->bkhw", w, f) + b[None, :, None, None]
        assert torch.allclose(model.cams(x), manual, atol=1e-5)
        per_image = model.cams(x, torch.tensor([3, 1]))
        assert torch.allclose(per_image[0], manual[0, 3], atol=1e-5)
        assert torch.allclose(per_image[1], manual[1, 1], atol=1e-5)


def test_logits_are_the_spatial_mean_of_the_cams(model):
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        logits, maps = model.forward_with_cams(x)
        assert torch.allclose(model(x), logits, atol=1e-5)
        assert torch.allclose(maps.mean(dim=(2, 3)), logits, atol=1e-6)


def test_cam_class_index_errors(model):
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="entries"):
        model.cams(x, torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        model.cams(x, torch.tensor([0, 4]))


def test_label_smoothing_hand_computed():
    m = CAM(num_classes=4, label_smoothing=0.2, batch_size=8)
    t = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    assert torch.allclose(m.smooth(t), torch.tensor([[0.05, 0.85, 0.05, 0.05]]))
    logits = torch.zeros(1, 4)
    # Uniform logits: CE = log 4 whatever the (normalised) target.
    assert torch.isclose(m.classification_loss(logits, t), torch.log(torch.tensor(4.0)))
    ml = CAM(num_classes=4, label_smoothing=0.2, multilabel=True, batch_size=8)
    assert torch.allclose(ml.smooth(torch.tensor([[1.0, 0.0, 1.0, 0.0]])), torch.tensor([[0.9, 0.1, 0.9, 0.1]]))


def test_l1_l2_penalties_match_hand_sum():
    m = CAM(num_classes=3, l1=1e-3, l2=1e-2, batch_size=8)
    weights = [p for p in m.parameters() if p.ndim > 1]
    expected = sum(1e-3 * p.abs().sum() + 1e-2 * p.pow(2).sum() for p in weights)
    assert torch.isclose(m.regularization(), expected, rtol=1e-5)
    assert CAM(num_classes=3, batch_size=8).regularization().item() == 0.0


def test_linear_scaling_rule():
    assert CAM(lr=0.1, batch_size=64).effective_lr() == pytest.approx(0.025)
    assert CAM(lr=0.1, batch_size=64, scale_lr=False).effective_lr() == pytest.approx(0.1)
    with pytest.raises(ValueError, match="batch size"):
        CAM(lr=0.1).effective_lr()


def test_weight_decay_skips_biases_and_norms():
    groups = CAM(num_classes=3, batch_size=256, weight_decay=1e-4, head_lr_mult=10).parameter_groups()
    for g in groups:
        assert all(p.ndim > 1 for p in g["params"]) == (g["weight_decay"] > 0)
    assert {g["lr"] for g in groups} == {0.1, 1.0}


def test_bad_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        CAM(optimizer="rmsprop")
    with pytest.raises(ValueError, match="label_smoothing"):
        CAM(label_smoothing=1.0)
    with pytest.raises(KeyError, match="unknown backbone"):
        CAM(backbone="vgg99")
