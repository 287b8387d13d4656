"""wsol: weakly supervised object localization and semantic segmentation."""

from wsol import backbones_wsoleval  # noqa: F401  (registers vgg16 and inception_v3)
from wsol.backbones import Backbone, create_backbone, list_backbones, register_backbone

__all__ = ["Backbone", "create_backbone", "list_backbones", "register_backbone"]
__version__ = "0.1.0"
