"""Finding the target layer and the GAP-linear classifier of a model without per-architecture tables."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """A target layer given as a module of ``model`` or as its dotted name (``"layer4"``, ``"backbone"``)."""
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(f"the target layer {type(layer).__name__} is not a submodule of the model")
        return layer
    try:
        return model.get_submodule(layer)
    except AttributeError as err:
        names = [n for n, _ in model.named_children()]
        raise KeyError(f"the model has no layer {layer!r} (top-level layers: {', '.join(names)})") from err


def default_target_layer(model: nn.Module, probe: Tensor) -> nn.Module:
    """The backbone's last feature map: ``model.backbone`` if there is one, else found by a probe forward.

    The probe runs ``model(probe)`` once without autograd and returns the last module (by completion
    time, so the outermost of nested modules) whose output is a 4-D map with more than one position —
    e.g. ``layer4`` of a ResNet, ``bn2`` of a timm EfficientNet. Global pooling (1x1 maps) and the
    classifier are skipped by that rule.
    """
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, nn.Module):
        return backbone
    last: list[nn.Module] = []

    def record(module: nn.Module, inputs: object, output: object) -> None:
        if isinstance(output, Tensor) and output.ndim == 4 and output.shape[-2] * output.shape[-1] > 1:
            last.append(module)

    handles = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    if not last:
        raise ValueError(
            "no layer of the model outputs a spatial (B, C, h, w) map (token models need a reshaped "
            "target); pass target_layer= explicitly"
        )
    return last[-1]


def _weight_of(module: nn.Module | Tensor) -> Tensor:
    if isinstance(module, Tensor):
        weight = module
    elif isinstance(module, nn.Linear):
        weight = module.weight
    elif isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
        weight = module.weight
    elif hasattr(module, "weight") and isinstance(module.weight, Tensor):  # wsol.models.head.CAMHead
        weight = module.weight
    else:
        raise ValueError(f"cannot read classifier weights from {type(module).__name__}; pass a Linear or (K, C)")
    return weight.flatten(1) if weight.ndim == 4 else weight


def resolve_classifier(model: nn.Module, classifier: nn.Module | Tensor | None, channels: int) -> Tensor:
    """``(K, C)`` weights of the linear classifier that follows global average pooling of the target layer.

    Looked up in this order: the explicit ``classifier``; a wsol ``head`` (``WSOLModule``); the backbone
    contract's ``classifier`` (:mod:`wsol.models.contract`: pretrained weights' own); timm's
    ``get_classifier()``; the last ``nn.Linear`` registered in the model (torchvision's ``fc`` / ``classifier[-1]``).

    Raises:
        ValueError: when no such classifier exists or its input width is not the map's channel count
            (a VGG-style MLP head, a bottleneck before the classifier): CAM is undefined there, use a
            gradient method such as ``gradcam``.
    """
    candidates: list[nn.Module | Tensor] = []
    if classifier is not None:
        candidates.append(classifier)
    else:
        head = getattr(model, "head", None)
        if isinstance(head, nn.Module) and isinstance(getattr(head, "weight", None), Tensor):
            candidates.append(head)
        backbone = getattr(model, "backbone", None)
        if isinstance(backbone, nn.Module) and hasattr(backbone, "out_channels") and hasattr(backbone, "stride"):
            from wsol.models.contract import backbone_contract

            backbone_fc = backbone_contract(backbone).classifier
            if backbone_fc is not None:
                candidates.append(backbone_fc)
        get_classifier = getattr(model, "get_classifier", None)
        if callable(get_classifier):
            fc = get_classifier()
            if isinstance(fc, nn.Module) and not isinstance(fc, nn.Identity):
                candidates.append(fc)
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if linears:
            candidates.append(linears[-1])
    if not candidates:
        raise ValueError("CAM needs a linear classifier after global average pooling; none was found (use gradcam)")
    weight = _weight_of(candidates[0])
    if weight.ndim != 2 or weight.shape[1] != channels:
        raise ValueError(
            f"CAM needs a linear classifier on the pooled {channels}-channel target map, but the classifier "
            f"has weights of shape {tuple(weight.shape)}; use a gradient method such as gradcam instead"
        )
    return weight
