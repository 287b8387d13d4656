"""Albumentations pipelines that move image, boxes and mask together.

The inclusive box convention of :mod:`wsol.data.schema` meets albumentations' ``pascal_voc`` format
(exclusive end) only here: ``x1 + 1`` going in, ``- 1`` coming out, so a horizontal flip maps
inclusive ``[x0, x1]`` to ``[W - 1 - x1, W - 1 - x0]``.

Evaluation keeps the reference protocol: the image is squashed to ``size x size`` (PIL bilinear, as
torchvision's ``Resize`` on PIL images does, or OpenCV bilinear) and GT boxes are mapped with the
protocol's truncating ``int(coord * size / W)`` rather than through the augmentation pipeline.
"""

from __future__ import annotations

import random
from typing import Any, Literal

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image

from wsol.data.schema import Sample
from wsol.metrics.boxes import resize_gt_boxes
from wsol.models.backbone import IMAGENET_MEAN, IMAGENET_STD


def _to_tensor(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    x = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    return (x - m) / s


def _output(
    sample: Sample,
    image: np.ndarray,
    boxes: np.ndarray,
    mask: np.ndarray | None,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> dict[str, Any]:
    target = torch.zeros(num_classes)
    target[list(sample.labels)] = 1.0
    out: dict[str, Any] = {
        "image": _to_tensor(image, mean, std),
        "target": target,
        "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "image_id": sample.image_id,
        "orig_size": torch.tensor(sample.size),
    }
    if len(sample.labels) == 1:
        out["label"] = torch.tensor(sample.labels[0])
    if mask is not None:
        out["mask"] = torch.from_numpy(np.ascontiguousarray(mask)).long()
    return out


class TrainTransform:
    """Random resized crop + horizontal flip, applied consistently to image, boxes and mask.

    Args:
        size: output side in pixels.
        num_classes: length of the one-/multi-hot target.
        scale: area range of the random crop.
        mean: normalisation mean.
        std: normalisation std.
        seed: seed of the augmentation RNG; None draws one from torch's global RNG, so
            ``pl.seed_everything`` makes runs repeat (albumentations 2 keeps its own generator).
            A ``seed`` given to a call overrides it for that sample.
    """

    def __init__(
        self,
        size: int,
        num_classes: int,
        scale: tuple[float, float] = (0.5, 1.0),
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        seed: int | None = None,
    ) -> None:
        self.num_classes, self.mean, self.std = num_classes, tuple(mean), tuple(std)
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        self.pipeline = A.Compose(
            [A.RandomResizedCrop(size=(size, size), scale=scale), A.HorizontalFlip(p=0.5)],
            bbox_params=A.BboxParams(format="pascal_voc", label_fields=["box_labels"], min_visibility=0.0),
            seed=seed,
        )

    def __call__(self, sample: Sample, seed: int | None = None) -> dict[str, Any]:
        """Crop and flip ``sample``; with ``seed``, the draws are a function of that seed alone.

        Args:
            sample: the image with its boxes and optional mask.
            seed: reseed the pipeline first, so this sample's augmentation does not depend on how many
                samples were drawn before (see :class:`wsol.data.sampling.SeededSamples`); None carries on
                from the pipeline's current state.
        """
        if seed is not None:
            # One generator pair shared by every transform: Compose.set_random_seed would give each transform
            # its own copy of the same stream, so the flip's draw would repeat the crop's first draw.
            self.pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
        boxes = sample.boxes.copy()
        boxes[:, 2:] += 1  # inclusive -> exclusive end
        kwargs: dict[str, Any] = {
            "image": sample.image,
            "bboxes": boxes,
            "box_labels": list(range(len(boxes))),
        }
        if sample.mask is not None:
            kwargs["mask"] = sample.mask
        out = self.pipeline(**kwargs)
        new_boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        new_boxes[:, 2:] -= 1  # back to inclusive
        return _output(sample, out["image"], new_boxes, out.get("mask"), self.num_classes, self.mean, self.std)


class EvalTransform:
    """Squash to ``size x size`` as the reference protocol does; boxes mapped by ``int(c * size / W)``.

    Args:
        size: output side in pixels.
        num_classes: length of the one-/multi-hot target.
        resize: ``"pil"`` (bilinear on a PIL image, the reference's torchvision ``Resize``) or
            ``"cv2"`` (OpenCV bilinear).
        mean: normalisation mean.
        std: normalisation std.
    """

    def __init__(
        self,
        size: int,
        num_classes: int,
        resize: Literal["pil", "cv2"] = "pil",
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        if resize not in ("pil", "cv2"):
            raise ValueError(f"resize must be 'pil' or 'cv2', got {resize!r}")
        self.size, self.num_classes, self.resize = size, num_classes, resize
        self.mean, self.std = tuple(mean), tuple(std)
        self.mask_pipeline = A.Compose([A.Resize(size, size, interpolation=cv2.INTER_NEAREST)])

    def __call__(self, sample: Sample) -> dict[str, Any]:
        width, height = sample.size
        if (width, height) == (self.size, self.size):
            image = sample.image
        elif self.resize == "pil":
            image = np.asarray(Image.fromarray(sample.image).resize((self.size, self.size), Image.BILINEAR))
        else:
            image = cv2.resize(sample.image, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        boxes = resize_gt_boxes(sample.boxes, (width, height), (self.size, self.size)).astype(np.float32)
        mask = None
        if sample.mask is not None:
            mask = self.mask_pipeline(image=sample.image, mask=sample.mask)["mask"]
        return _output(sample, image, boxes, mask, self.num_classes, self.mean, self.std)
