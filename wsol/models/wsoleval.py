"""VGG16 and InceptionV3 in the CAM variants of the reference benchmark (clovaai/wsolevaluation).

**vgg16** (the reference's ``VggCam`` with its 14x14 configuration): torchvision's VGG16 convolutions
(``features``, no batch norm) without the last max-pool, then ``conv6`` (3x3, 512 -> 1024, padding 1) +
ReLU. 1024 channels at stride 16 (14x14 at 224 px). The reference's ``fc`` on the GAP features is the
CAM head of :class:`~wsol.methods.base.WSOLModule` (a 1x1 conv with bias: the same function by linearity).

**inception_v3** (the reference's ``InceptionCam``): torchvision's InceptionV3 stem and ``Mixed_5b`` ..
``Mixed_6e`` with ``Mixed_6a`` made stride 1 (its 3x3 stride-2 convolutions become stride 1 with padding 1
and its max-pool 3x3 stride 1 padding 1), then the SPG-style head ``SPG_A3_1b`` (3x3, 768 -> 1024) + ReLU
and ``SPG_A3_2b`` (3x3, 1024 -> 1024) + ReLU. The reference's ``SPG_A4`` (1x1 conv, 1024 -> K) followed by
GAP is again the CAM head. ``large_feature_map=True`` (default) gives 28x28 at 224 px (stride 8);
``False`` adds the reference's extra 3x3/2 max-pool before ``Mixed_6a`` (14x14, stride 16).

What is approximate (written from docs/protocol.md §1.1 and memory of the reference files, not a line-by-line
port):

* InceptionV3 padding: here every stem convolution that torchvision runs unpadded (``Conv2d_1a``,
  ``Conv2d_2a``, ``Conv2d_4a``) gets padding 1 and the stem max-pools get padding 1, so the map is exactly
  ``H / 8`` (28x28 at 224 px). The reference keeps some unpadded layers and ``ceil_mode`` pools, which gives
  a map of about 26-28 px at 224 ("28x28-ish"); the weights are the same either way.
* Initialisation without pretrained weights: VGG convolutions and ``conv6`` Kaiming-normal (fan-out),
  every InceptionV3 convolution Xavier-uniform, biases zero; the reference's ``initialize_weights`` modes
  ("he" for VGG, "xavier" for Inception) are believed to match but were not checked line by line.
* Learning-rate groups: the reference trains ``conv6`` / ``SPG_A3_*`` with the classifier's 10x learning
  rate; here they belong to the backbone (the ``head_lr_mult`` of ``WSOLModule`` covers the 1x1 head only).
* Normalisation: ImageNet mean/std for both, as the reference's loaders use; torchvision's
  ``transform_input`` for the Google InceptionV3 weights is not applied (the reference does not either).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from wsol.models.backbone import Backbone, register_backbone
from wsol.models.weights import load_weights

__all__ = ["InceptionV3CAM", "VGG16CAM", "inception_v3", "vgg16"]

_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def _vgg16_features() -> nn.Sequential:
    """torchvision's VGG16 ``features`` (same layer indices, so its checkpoints load) with He init."""
    from torchvision.models.vgg import make_layers

    features = make_layers(_VGG16_CFG, batch_norm=False)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return features


def _features_state(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The ``features.*`` entries of a VGG16 state dict, prefix removed (the 1000-way classifier is dropped)."""
    if "state_dict" in state:
        state = state["state_dict"]
    picked = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    if not picked:
        raise ValueError(f"{source} holds no 'features.*' weights: not a torchvision VGG16 checkpoint")
    return picked


class VGG16CAM(Backbone):
    """VGG16 without its last max-pool, plus ``conv6`` (3x3, 1024) + ReLU: 1024 channels, stride 16.

    Args:
        pretrained: load torchvision's ImageNet weights (``VGG16_Weights.IMAGENET1K_V1``) into the
            convolutions; ``conv6`` stays freshly initialised.
        weights_path: a local torchvision VGG16 state dict to load instead.
    """

    def __init__(self, pretrained: bool = False, weights_path: str | Path | None = None) -> None:
        features = _vgg16_features()
        if weights_path is not None:
            path = Path(weights_path)
            if not path.is_file():
                raise FileNotFoundError(f"weights file not found: {path}")
            features.load_state_dict(_features_state(torch.load(path, map_location="cpu", weights_only=True), path))
        elif pretrained:
            from torchvision.models import VGG16_Weights

            state = VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
            features.load_state_dict(_features_state(state, "torchvision VGG16_Weights.IMAGENET1K_V1"))
        conv6 = nn.Conv2d(512, 1024, kernel_size=3, padding=1)
        nn.init.kaiming_normal_(conv6.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv6.bias)
        # features[:-1] drops the fifth max-pool: 14x14 maps at 224 px, as the reference's CAM config.
        body = nn.Sequential(*features[:-1], conv6, nn.ReLU(inplace=False))
        super().__init__(body, out_channels=1024, stride=16)


class _InceptionBStride1(nn.Module):
    """torchvision's ``InceptionB`` (``Mixed_6a``) with stride 1 everywhere: the map keeps its size.

    Same parameter names and shapes as torchvision's block, so its weights load unchanged.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.branch3x3 = block.branch3x3
        self.branch3x3dbl_1 = block.branch3x3dbl_1
        self.branch3x3dbl_2 = block.branch3x3dbl_2
        self.branch3x3dbl_3 = block.branch3x3dbl_3
        for conv in (self.branch3x3.conv, self.branch3x3dbl_3.conv):
            conv.stride, conv.padding = (1, 1), (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch3x3(x), double, pool], dim=1)


def _conv_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.ReLU(inplace=True))


class InceptionV3CAM(Backbone):
    """InceptionV3 up to ``Mixed_6e`` with a stride-1 ``Mixed_6a`` and the SPG-style 1024-channel head.

    Args:
        pretrained: load torchvision's ImageNet weights (``Inception_V3_Weights.IMAGENET1K_V1``) into the
            InceptionV3 layers; the SPG layers stay freshly initialised.
        weights_path: a local torchvision InceptionV3 state dict to load instead.
        large_feature_map: stride 8 (28x28 at 224 px, the default) or, with the reference's extra max-pool
            before ``Mixed_6a``, stride 16.
    """

    def __init__(
        self, pretrained: bool = False, weights_path: str | Path | None = None, large_feature_map: bool = True
    ) -> None:
        import torchvision

        use_hub = pretrained and weights_path is None
        if use_hub:
            model = torchvision.models.inception_v3(weights="DEFAULT")
        else:
            # torchvision's truncated-normal init takes seconds; Xavier is the reference's mode for Inception.
            model = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
            for m in model.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.xavier_uniform_(m.weight)
        if weights_path is not None:
            load_weights(model, weights_path, ignore_prefixes=("fc.", "AuxLogits."))
        # Same-size padding for the unpadded stem layers: the map is exactly H / 8 (see module docstring).
        for conv in (model.Conv2d_1a_3x3.conv, model.Conv2d_2a_3x3.conv, model.Conv2d_4a_3x3.conv):
            conv.padding = (1, 1)
        layers: list[tuple[str, nn.Module]] = [
            ("Conv2d_1a_3x3", model.Conv2d_1a_3x3),
            ("Conv2d_2a_3x3", model.Conv2d_2a_3x3),
            ("Conv2d_2b_3x3", model.Conv2d_2b_3x3),
            ("maxpool1", nn.MaxPool2d(3, stride=2, padding=1)),
            ("Conv2d_3b_1x1", model.Conv2d_3b_1x1),
            ("Conv2d_4a_3x3", model.Conv2d_4a_3x3),
            ("maxpool2", nn.MaxPool2d(3, stride=2, padding=1)),
            ("Mixed_5b", model.Mixed_5b),
            ("Mixed_5c", model.Mixed_5c),
            ("Mixed_5d", model.Mixed_5d),
        ]
        if not large_feature_map:
            layers.append(("maxpool3", nn.MaxPool2d(3, stride=2, padding=1)))
        layers += [
            ("Mixed_6a", _InceptionBStride1(model.Mixed_6a)),
            ("Mixed_6b", model.Mixed_6b),
            ("Mixed_6c", model.Mixed_6c),
            ("Mixed_6d", model.Mixed_6d),
            ("Mixed_6e", model.Mixed_6e),
            ("SPG_A3_1b", _conv_relu(768, 1024)),
            ("SPG_A3_2b", _conv_relu(1024, 1024)),
        ]
        super().__init__(nn.Sequential(OrderedDict(layers)), out_channels=1024, stride=8 if large_feature_map else 16)


@register_backbone()
def vgg16(pretrained: bool = False, weights_path: str | Path | None = None) -> Backbone:
    """VGG16 CAM variant of the reference benchmark (1024 channels, stride 16); see :class:`VGG16CAM`."""
    return VGG16CAM(pretrained=pretrained, weights_path=weights_path)


@register_backbone()
def inception_v3(
    pretrained: bool = False, weights_path: str | Path | None = None, large_feature_map: bool = True
) -> Backbone:
    """InceptionV3 CAM variant of the reference (1024 channels, stride 8 or 16); see :class:`InceptionV3CAM`."""
    return InceptionV3CAM(pretrained=pretrained, weights_path=weights_path, large_feature_map=large_feature_map)
