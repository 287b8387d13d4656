"""SEAM's network: a CAM network whose maps a pixel correlation module (PCM) refines.

After ``YudeWang/SEAM`` ``network/resnet38_SEAM.py`` (Wang et al., CVPR 2020, arXiv 2004.04581), made
backbone-agnostic; docs/methods.md §1. The training system is :class:`wsol.methods.SEAM`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from wsol.models.cam_net import CAMNet
from wsol.models.head import CAMHead
from wsol.models.pcm import PCM, pcm_input

__all__ = ["SEAMNet"]


class SEAMNet(CAMNet):
    """Backbone, ``Dropout2d`` and a bias-free 1x1 CAM head (SEAM's ``fc8``), plus the PCM.

    The PCM sees detached features: the backbone's output, or the outputs of ``pcm_layers`` (names from
    ``backbone.named_modules()``, e.g. a ResNet's layer2/layer3, ``["body.5", "body.6"]`` for the default stem).
    Logits are the GAP of the raw CAM. The maps of ``forward_with_cams`` are the PCM's (SEAM's inference maps)
    unless ``cam_source="cam"``.

    Args:
        backbone: a :class:`~wsol.models.Backbone`.
        num_classes: K.
        dropout: ``Dropout2d`` rate before the head (0.5 in SEAM).
        pcm_layers: backbone submodules whose outputs feed the PCM; None for the backbone output.
        pcm_channels: projection width of each PCM input.
        cam_source: maps returned by ``forward_with_cams`` / ``cams``: ``"pcm"`` or ``"cam"``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        dropout: float = 0.5,
        pcm_layers: list[str] | None = None,
        pcm_channels: int = 128,
        cam_source: Literal["pcm", "cam"] = "pcm",
    ) -> None:
        if cam_source not in ("pcm", "cam"):
            raise ValueError(f"cam_source must be 'pcm' or 'cam', got {cam_source!r}")
        head = CAMHead(backbone.out_channels, num_classes, bias=False)
        nn.init.xavier_uniform_(head.weight)
        super().__init__(backbone, head)
        self.dropout = nn.Dropout2d(dropout)
        self.pcm_layers = list(pcm_layers or [])
        self.cam_source = cam_source
        self.pcm = PCM(self._pcm_in_channels(), pcm_channels)

    def new_modules(self) -> tuple[nn.Module, ...]:
        """The head and the PCM."""
        return (self.head, self.pcm)

    def _pcm_in_channels(self) -> list[int]:
        if not self.pcm_layers:
            return [self.backbone.out_channels]
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            _, mids = self.backbone_features(torch.zeros(1, 3, 64, 64))
        self.backbone.train(was_training)
        return [m.shape[1] for m in mids]

    def backbone_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The backbone output and the PCM's inputs (captured by temporary forward hooks)."""
        if not self.pcm_layers:
            out = self.features(x)
            return out, [out]
        store: dict[str, Tensor] = {}
        handles = [
            self.backbone.get_submodule(n).register_forward_hook(lambda _m, _i, o, n=n: store.__setitem__(n, o))
            for n in self.pcm_layers
        ]
        try:
            out = self.features(x)
        finally:
            for handle in handles:
                handle.remove()
        return out, [store[n] for n in self.pcm_layers]

    def seam_forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Logits ``(B, K)``, raw CAMs ``(B, K, h, w)`` and PCM maps ``(B, K + 1, h, w)`` (channel 0: background)."""
        features, pcm_features = self.backbone_features(x)
        cams = self.head.class_maps(self.dropout(features))
        refined = self.pcm(pcm_input(cams), x, pcm_features)
        return cams.mean(dim=(2, 3)), cams, refined

    def forward_with_cams(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and the PCM's maps of every class (``cam_source="pcm"``) or the raw CAMs."""
        logits, cams, refined = self.seam_forward(x)
        return logits, refined[:, 1:] if self.cam_source == "pcm" else cams
