"""Cutting a backbone at its last stage, for methods whose training taps the features before it (BAS's mask, BGC's
attentive drop).

Only backbones whose body is an ``nn.Sequential`` ending in its last stage can be cut (the ResNets of
:mod:`wsol.models.resnet`: stem, ``layer1`` ... ``layer4``); the pieces share the backbone's parameters, so nothing
is copied and the state dict is unchanged.
"""

from __future__ import annotations

from torch import nn

__all__ = ["split_inside_last_stage", "split_last_stage", "stage_in_channels"]


def split_last_stage(backbone: nn.Module) -> tuple[nn.Sequential, nn.Module]:
    """``(trunk, last_stage)`` with ``last_stage(trunk(x))`` equal to the backbone's features (the ResNets' ``layer4``
    is the last stage).

    Raises:
        ValueError: for a backbone whose body is not an ``nn.Sequential`` of at least two children (timm,
            EfficientNet, the VGG/Inception variants).
    """
    body = getattr(backbone, "body", None)
    if not isinstance(body, nn.Sequential) or len(body) < 2:
        raise ValueError(
            f"backbone {type(backbone).__name__} has no nn.Sequential body ending in its last stage (as the ResNets'), "
            "so it cannot be cut before its last stage"
        )
    return body[:-1], body[-1]


def split_inside_last_stage(backbone: nn.Module) -> tuple[nn.Sequential, nn.Module]:
    """``(head_part, rest)``: the body up to and including the first block of the last stage, and the remaining
    blocks; when the last stage is a single block (ResNet-10), the cut falls before the last stage instead, so that
    ``rest`` always holds at least one block.

    Raises:
        ValueError: as :func:`split_last_stage`.
    """
    trunk, last = split_last_stage(backbone)
    if isinstance(last, nn.Sequential) and len(last) >= 2:
        return nn.Sequential(*trunk, last[0]), last[1:]
    return trunk, last


def stage_in_channels(stage: nn.Module) -> int:
    """Input channels of a stage: those of its first convolution.

    Raises:
        ValueError: if the stage holds no ``nn.Conv2d``.
    """
    conv = next((m for m in stage.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(f"the stage ({type(stage).__name__}) holds no Conv2d to read its input channels from")
    return int(conv.in_channels)
