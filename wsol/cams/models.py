"""Models for post-hoc CAMs: a checkpoint or a backbone name, and the dataset-to-model class mapping."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class CAMModel:
    """A classifier ready for CAM methods, with what is needed to feed and score it.

    Attributes:
        label: short name for tables (the backbone name or the checkpoint's file stem).
        module: the classifier in eval mode (a :class:`wsol.methods.WSOLModule`).
        mean: normalisation mean its weights expect.
        std: normalisation std its weights expect.
        num_classes: outputs of the classifier.
        head: ``"trained"`` (checkpoint), ``"pretrained"`` (the weights' own classifier) or ``"random"``.
    """

    label: str
    module: nn.Module
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_classes: int
    head: str


def load_cam_model(
    checkpoint: str | Path | None = None,
    backbone: str | None = None,
    pretrained: bool = False,
    num_classes: int | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
) -> CAMModel:
    """Load a trained checkpoint (its recorded class, :func:`wsol.load_model`) or build a classifier from a
    backbone name (exactly one of the two).

    A backbone with pretrained weights keeps their classifier (e.g. ImageNet's 1000-way ``fc``); without
    one the head is random (seeded) with ``num_classes`` outputs — a sanity baseline, not a method.
    """
    from wsol.onnx import build_backbone_model, load_checkpoint_model

    if (checkpoint is None) == (backbone is None):
        raise ValueError("give exactly one of a checkpoint and a backbone name")
    if checkpoint is not None:
        module = load_checkpoint_model(checkpoint).model
        label, head = Path(checkpoint).stem, "trained"
    else:
        module, head = build_backbone_model(backbone, pretrained, num_classes, backbone_kwargs, seed)
        label = backbone
    from wsol.models import backbone_contract

    contract = backbone_contract(module.backbone)
    return CAMModel(label, module.eval(), contract.mean, contract.std, module.num_classes, head)


def imagenet_class_indices(wnids: list[str] | tuple[str, ...]) -> list[int]:
    """ImageNet-1k class index of each WordNet id, in the standard sorted-wnid order (timm's synset list).

    E.g. goldfish ``n01443537`` -> 1, koala ``n01882714`` -> 105, banana ``n07753592`` -> 954.

    Raises:
        KeyError: naming the wnids that are not ImageNet-1k classes.
    """
    text = resources.files("timm.data").joinpath("_info/imagenet_synsets.txt").read_text()
    index = {w: i for i, w in enumerate(text.split())}
    missing = [w for w in wnids if w not in index]
    if missing:
        raise KeyError(f"not ImageNet-1k classes: {', '.join(missing[:5])}")
    return [index[w] for w in wnids]


def class_mapping(dataset: Any, num_model_classes: int) -> torch.Tensor:
    """Model class index of each dataset class: identity when the counts match, ImageNet wnids otherwise.

    A 1000-way ImageNet classifier evaluated on an ImageNet subset (Tiny ImageNet's ``wnids``, or class
    names that are wnids) scores each image's GT class at its ImageNet index.

    Raises:
        ValueError: when the dataset's classes cannot be matched to the model's outputs.
    """
    num_data_classes = len(dataset.class_names)
    wnids = getattr(dataset, "wnids", None) or list(dataset.class_names)
    if num_model_classes == 1000 and all(str(w).startswith("n") and str(w)[1:].isdigit() for w in wnids):
        return torch.tensor(imagenet_class_indices(list(wnids)))
    if num_model_classes == num_data_classes:
        return torch.arange(num_data_classes)
    raise ValueError(
        f"the model has {num_model_classes} classes and the dataset {num_data_classes}; only an ImageNet-1k "
        "model on ImageNet wnid classes, or equal class counts, can be matched"
    )
