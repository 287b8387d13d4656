"""What ``wsol export`` exports: a trained checkpoint (any registered method) or a classifier built from a backbone."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn


class LoadedCheckpoint(NamedTuple):
    """A checkpoint's network and what the checkpoint says about it."""

    model: nn.Module  #: the network (:class:`~wsol.models.cam_net.CAMNet`), in eval mode on CPU
    class_names: list[str] | None  #: stored class names, if any
    method: str  #: the training method's class name, e.g. ``"SEAM"``
    backbone: str  #: the registered backbone name (a module's class path when it was given by class_path)


def load_checkpoint_model(path: str | Path) -> LoadedCheckpoint:
    """The network of a checkpoint of any registered training method, on CPU (:func:`wsol.load_model`).

    Pretrained backbone weights are never fetched: the checkpoint holds every weight.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the checkpoint cannot be read safely, names no registered method or backbone, or needs a
            plugin that is not loaded ("needs plugin X: pass --import X").
    """
    from wsol.methods.checkpoint import METHOD_KEY, NEEDS_KEY, load_model, read_checkpoint

    path = Path(path)
    ckpt = read_checkpoint(path)  # weights_only: a crafted file is refused, never executed
    model = load_model(path)
    hparams = ckpt.get("hyper_parameters", {})
    names = hparams.get("class_names") or ckpt.get("datamodule_hyper_parameters", {}).get("class_names")
    method = str(ckpt.get(METHOD_KEY, "")).rpartition(".")[2]
    record = (ckpt.get(NEEDS_KEY) or {}).get("backbone") or {}
    backbone = hparams.get("backbone") if isinstance(hparams.get("backbone"), str) else None
    backbone = backbone or record.get("name") or record.get("class") or type(model.backbone).__name__
    return LoadedCheckpoint(model.eval(), list(map(str, names)) if names else None, method, str(backbone))


def build_backbone_model(
    backbone: str,
    pretrained: bool = False,
    num_classes: int | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[nn.Module, str]:
    """A CAM network from a backbone name, for export and benchmarking without a trained checkpoint.

    With pretrained weights that include a classifier (e.g. ImageNet's ``fc``) the CAM head is that
    classifier; otherwise the head is randomly initialised (seeded) with ``num_classes`` outputs.

    Returns:
        The model in eval mode and the head's origin: ``"pretrained"`` or ``"random"``.

    Raises:
        ValueError: if ``num_classes`` contradicts the pretrained classifier.
    """
    from wsol.models import CAMHead, CAMNet, backbone_contract, create_backbone

    torch.manual_seed(seed)
    body = create_backbone(backbone, pretrained=pretrained, **(backbone_kwargs or {}))
    contract = backbone_contract(body)
    fc = contract.classifier
    if fc is not None and num_classes not in (None, fc.out_features):
        raise ValueError(f"the pretrained classifier of {backbone} has {fc.out_features} classes, not {num_classes}")
    model = CAMNet(body, CAMHead(contract.out_channels, fc.out_features if fc is not None else (num_classes or 1000)))
    if fc is None:
        return model.eval(), "random"
    with torch.no_grad():
        # By linearity, fc(GAP(f)) == GAP(conv1x1(f)) with the fc weights as 1x1 kernels.
        model.head.weight.copy_(fc.weight.reshape(model.head.weight.shape))
        model.head.bias.copy_(fc.bias if fc.bias is not None else torch.zeros_like(model.head.bias))
    return model.eval(), "pretrained"


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k category names in the standard index order (from torchvision, offline)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
