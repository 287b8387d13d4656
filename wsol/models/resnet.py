"""ResNets: ``resnet10`` (the small-data classifier) and torchvision's ``resnet18/34/50``, one shared body with a
configurable stem, third-stage and last-stage stride."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from wsol.models.backbone import Backbone, register_backbone
from wsol.models.weights import hub_download, load_weights


def _unstride(layer: nn.Module) -> None:
    """Make the first block of a ResNet stage keep its input resolution (stride 2 -> 1, no dilation)."""
    block = layer[0]
    for conv in (block.conv1, getattr(block, "conv2", None)):
        if conv is not None and conv.stride == (2, 2):
            conv.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)


def _resnet_body(model: nn.Module, stem_stride: int, last_stride: int, layer3_stride: int) -> tuple[nn.Sequential, int]:
    """Strip a torchvision ResNet to its convolutional trunk with a configurable stem, third and last stride."""
    if stem_stride not in (1, 2, 4):
        raise ValueError(f"stem_stride must be 1, 2 or 4, got {stem_stride}")
    for name, value in (("layer3_stride", layer3_stride), ("last_stride", last_stride)):
        if value not in (1, 2):
            raise ValueError(f"{name} must be 1 or 2, got {value}")
    stem: list[nn.Module] = [model.conv1, model.bn1, model.relu]
    if stem_stride < 4:
        # A 3x3 stride-1 stem keeps small images (e.g. 64 px) from collapsing to 2x2 maps.
        model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
        stem[0] = model.conv1
    if stem_stride >= 2:
        stem.append(model.maxpool)
    # WSOL papers use a stride-1 last stage to get 14x14 maps at 224 px; a stride-1 third stage too gives 28x28.
    if layer3_stride == 1:
        _unstride(model.layer3)
    if last_stride == 1:
        _unstride(model.layer4)
    body = nn.Sequential(*stem, model.layer1, model.layer2, model.layer3, model.layer4)
    return body, stem_stride * 2 * layer3_stride * last_stride


class _ResNet10(nn.Module):
    """ResNet-10: torchvision's BasicBlock x [1, 1, 1, 1] with a configurable base width.

    Attribute names follow torchvision's ResNet so its checkpoints load with ``weights_path``.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        widths = (width, 2 * width, 4 * width, 8 * width)
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers, inplanes = [], width
        for planes, stride in zip(widths, (1, 2, 2, 2), strict=True):
            downsample = None
            if stride != 1 or inplanes != planes:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                )
            layers.append(nn.Sequential(BasicBlock(inplanes, planes, stride, downsample)))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(widths[-1], 1000)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def _torchvision_resnet(
    arch: str,
    pretrained: bool,
    weights_path: str | Path | None,
    stem_stride: int = 4,
    last_stride: int = 2,
    width: int = 64,
    layer3_stride: int = 2,
) -> Backbone:
    """The shared body of every ResNet builder: ``arch``'s trunk with the stem, third and last strides given
    (``stem_stride`` 1, 2 or 4; ``last_stride`` / ``layer3_stride`` 1 keep that stage's resolution); ``width`` is
    ResNet-10's first-stage channel count (torchvision's ResNets have their own)."""
    import torchvision

    if width != 64 and arch != "resnet10":
        raise ValueError(f"width is a resnet10 option; {arch} has torchvision's widths")

    if arch == "resnet10":
        if pretrained and weights_path is None:
            raise ValueError("resnet10 has no published pretrained weights; pass weights_path= instead")
        model = _ResNet10(width)
    else:
        with hub_download(arch):
            model = torchvision.models.get_model(
                arch, weights="DEFAULT" if pretrained and weights_path is None else None
            )
    if weights_path is not None:
        load_weights(model, weights_path, ignore_prefixes=("fc.",))
    classifier = model.fc if (pretrained or weights_path is not None) and arch != "resnet10" else None
    body, stride = _resnet_body(model, stem_stride, last_stride, layer3_stride)
    return Backbone(body, model.fc.in_features, stride, classifier=classifier)


@register_backbone()
def resnet10(
    pretrained: bool = False,
    weights_path: str | Path | None = None,
    stem_stride: int = 4,
    last_stride: int = 2,
    width: int = 64,
    layer3_stride: int = 2,
) -> Backbone:
    """ResNet-10 (BasicBlock x [1, 1, 1, 1], ``8 * width`` channels), the small-data classifier.

    ``stem_stride=1`` or ``2`` replaces the 7x7/2 stem with a 3x3/1 one for small inputs;
    ``last_stride=1`` doubles the map resolution and ``layer3_stride=1`` doubles it again (16x16 maps at 64 px
    train in about twice the time of 4x4 ones on a CPU); ``width`` is the first stage's channel count.
    """
    return _torchvision_resnet("resnet10", pretrained, weights_path, stem_stride, last_stride, width, layer3_stride)


@register_backbone()
def resnet18(pretrained: bool = False, weights_path: str | Path | None = None, **strides: int) -> Backbone:
    """torchvision ResNet-18 trunk (512 channels, stride 32); ``stem_stride``, ``last_stride``, ``layer3_stride``."""
    return _torchvision_resnet("resnet18", pretrained, weights_path, **strides)


@register_backbone()
def resnet34(pretrained: bool = False, weights_path: str | Path | None = None, **strides: int) -> Backbone:
    """torchvision ResNet-34 trunk (512 channels, stride 32); ``stem_stride``, ``last_stride``, ``layer3_stride``."""
    return _torchvision_resnet("resnet34", pretrained, weights_path, **strides)


@register_backbone()
def resnet50(pretrained: bool = False, weights_path: str | Path | None = None, **strides: int) -> Backbone:
    """torchvision ResNet-50 trunk (2048 channels, stride 32); ``stem_stride``, ``last_stride``, ``layer3_stride``."""
    return _torchvision_resnet("resnet50", pretrained, weights_path, **strides)
