"""The reference benchmark's VGG16 and InceptionV3 CAM variants: layout, map sizes, weight loading."""

import pytest
import torch
import torchvision

from wsol import create_backbone
from wsol.methods import CAM
from wsol.models.wsoleval import VGG16CAM, InceptionV3CAM


def test_vgg16_drops_the_last_pool_and_adds_conv6():
    backbone = create_backbone("vgg16").eval()
    assert isinstance(backbone, VGG16CAM)
    convs = [m for m in backbone.body if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in backbone.body if isinstance(m, torch.nn.MaxPool2d)]
    assert len(convs) == 14 and len(pools) == 4  # 13 VGG16 convolutions + conv6; 4 of 5 pools
    assert (convs[-1].in_channels, convs[-1].out_channels, convs[-1].kernel_size) == (512, 1024, (3, 3))
    assert isinstance(backbone.body[-1], torch.nn.ReLU)
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 224, 224)).shape == (1, 1024, 14, 14)


@pytest.mark.parametrize(("large", "side"), [(True, 8), (False, 4)])
def test_inception_v3_map_size_and_spg_head(large, side):
    backbone = create_backbone("inception_v3", large_feature_map=large).eval()
    assert isinstance(backbone, InceptionV3CAM) and backbone.stride == 64 // side
    names = [n for n, _ in backbone.body.named_children()]
    assert names[-3:] == ["Mixed_6e", "SPG_A3_1b", "SPG_A3_2b"] and ("maxpool3" in names) is not large
    with torch.no_grad():
        f = backbone(torch.randn(1, 3, 64, 64))
    assert f.shape == (1, 1024, side, side) and (f >= 0).all()  # ReLU after SPG_A3_2b


def test_vgg16_loads_torchvision_weights_from_a_local_file(tmp_path):
    torch.manual_seed(0)
    # body[0:30] is torchvision's features[0:30] (its last max-pool, index 30, is dropped): same names.
    body = create_backbone("vgg16").body.state_dict()
    state = {f"features.{k}": v for k, v in body.items() if int(k.split(".")[0]) < 30}
    state["features.0.weight"] = torch.randn_like(state["features.0.weight"])
    state["classifier.0.weight"] = torch.zeros(3, 3)  # the 1000-way classifier is ignored
    torch.save(state, tmp_path / "vgg16.pth")
    backbone = create_backbone("vgg16", weights_path=tmp_path / "vgg16.pth")
    assert torch.equal(backbone.body[0].weight, state["features.0.weight"])
    assert torch.equal(backbone.body[28].weight, state["features.28.weight"])
    with pytest.raises(ValueError, match="no 'features.\\*' weights"):
        torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "bad.pth")
        create_backbone("vgg16", weights_path=tmp_path / "bad.pth")


def test_inception_v3_loads_torchvision_weights_from_a_local_file(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(reference.state_dict(), tmp_path / "inception.pth")
    backbone = create_backbone("inception_v3", weights_path=tmp_path / "inception.pth").eval()
    body = dict(backbone.body.named_children())
    for name in ("Conv2d_1a_3x3", "Mixed_5b", "Mixed_6a", "Mixed_6e"):
        ours = body[name].state_dict()
        theirs = getattr(reference, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_cam_on_vgg16_yields_one_map_per_class_at_stride_16():
    model = CAM(backbone="vgg16", num_classes=5).eval()
    with torch.no_grad():
        logits, maps = model.forward_with_cams(torch.randn(2, 3, 64, 96))
    assert logits.shape == (2, 5) and maps.shape == (2, 5, 4, 6)
    torch.testing.assert_close(maps.mean(dim=(2, 3)), logits)  # GAP(conv1x1) == linear(GAP): the reference's fc
