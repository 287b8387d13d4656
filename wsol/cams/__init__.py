"""Post-hoc CAM methods: pure torch, batched, on the model's device, differentiable on request.

>>> from wsol.cams import create_cam
>>> maps, logits = create_cam("gradcam", model)(images, targets=labels)

Registered: ``cam``, ``gradcam``, ``gradcampp``, ``xgradcam``, ``layercam``, ``scorecam``, ``eigencam``, and
``native`` (a training method's own maps: SEAM's PCM, ACoL's fused maps, BAS's generator, FSL's foreground).
"""

from wsol.cams.base import (
    CAM_METHODS,
    ActivationHook,
    CAMInputs,
    CAMMethod,
    CAMResult,
    create_cam,
    list_cams,
    minmax_cams,
    register_cam,
)
from wsol.cams.cam import PlainCAM
from wsol.cams.eigencam import EigenCAM
from wsol.cams.gradient import GradCAM, GradCAMpp, LayerCAM, XGradCAM
from wsol.cams.models import CAMModel, class_mapping, imagenet_class_indices, load_cam_model
from wsol.cams.native import NativeCAM
from wsol.cams.scorecam import ScoreCAM

__all__ = [
    "CAM_METHODS",
    "ActivationHook",
    "CAMModel",
    "CAMInputs",
    "CAMMethod",
    "NativeCAM",
    "PlainCAM",
    "CAMResult",
    "EigenCAM",
    "GradCAM",
    "GradCAMpp",
    "LayerCAM",
    "ScoreCAM",
    "XGradCAM",
    "class_mapping",
    "create_cam",
    "imagenet_class_indices",
    "list_cams",
    "load_cam_model",
    "minmax_cams",
    "register_cam",
]


def __getattr__(name: str) -> object:
    # The post-hoc CAM was called ``CAM`` like the training method ``wsol.methods.CAM``; the old name still works.
    if name == "CAM":
        import warnings

        warnings.warn("wsol.cams.CAM is now wsol.cams.PlainCAM", DeprecationWarning, stacklevel=2)
        return PlainCAM
    raise AttributeError(f"module 'wsol.cams' has no attribute {name!r}")
