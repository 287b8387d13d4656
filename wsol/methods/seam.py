"""SEAM: self-supervised equivariant attention mechanism (Wang et al., CVPR 2020, arXiv 2004.04581).

After ``YudeWang/SEAM`` ``train_SEAM.py`` (losses) and ``network/resnet38_SEAM.py`` (PCM), made
backbone-agnostic. See docs/methods.md §1 for the exact formulas, defaults and pitfalls.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsol.methods.base import WSOLModule
from wsol.methods.registry import register_method
from wsol.models.pcm import relu_minmax, with_background
from wsol.models.seam_net import SEAMNet

__all__ = ["SEAM", "ecr_loss", "equivariant_transform", "er_loss", "max_onehot", "min_pool_loss"]

Transform = Literal["rescale", "flip", "rotation", "translation"]


def equivariant_transform(
    x: Tensor, kind: Transform, scale: float = 0.3, degrees: float = 90.0, shift: float = 0.125
) -> Tensor:
    """The spatial transform ``A`` applied to images and, identically, to their maps ``(B, C, H, W)``.

    ``rescale``: bilinear, ``align_corners=True`` (SEAM's only transform, factor 0.3); ``flip``:
    horizontal; ``rotation``: by ``degrees`` (exact ``rot90`` for multiples of 90, else bilinear with
    zero padding, square inputs); ``translation``: by ``shift`` of the size, down and right, zero-filled.
    """
    if kind == "rescale":
        return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=True)
    if kind == "flip":
        return x.flip(-1)
    if kind == "rotation":
        if degrees % 90 == 0:
            return torch.rot90(x, int(degrees // 90) % 4, dims=(-2, -1))
        c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
        theta = x.new_tensor([[c, -s, 0.0], [s, c, 0.0]]).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if kind == "translation":
        h, w = x.shape[-2:]
        dy, dx = round(shift * h), round(shift * w)
        out = torch.zeros_like(x)
        out[..., dy:, dx:] = x[..., : h - dy, : w - dx]
        return out
    raise ValueError(f"unknown transform {kind!r}")


def er_loss(transformed: Tensor, other: Tensor) -> Tensor:
    """Equivariant regularization, ``mean |A(F(I)) - F(A(I))|`` over fg maps ``(B, K, h, w)``.

    ER, Eq. (3) of arXiv 2004.04581 (L1, as the code). The mean runs over all classes, absent ones (zeroed)
    included, which makes it small; the author keeps it so (SEAM issue #1).
    """
    return (transformed - other).abs().mean()


def max_onehot(maps: Tensor) -> Tensor:
    """Keep the background channel 0 and, per pixel, only the maximal foreground channel(s)."""
    fg = maps[:, 1:]
    return torch.cat([maps[:, :1], fg * (fg >= fg.amax(dim=1, keepdim=True))], dim=1)


def ecr_loss(target: Tensor, refined: Tensor, top_ratio: float = 0.2) -> Tensor:
    """One direction of the equivariant cross regularization, with hard-pixel selection.

    ``|max_onehot(target.detach()) - refined|`` over ``(B, K + 1, h, w)``; per image the largest
    ``top_ratio`` of its ``(K + 1) h w`` entries are averaged (ECR, Eq. (6) of arXiv 2004.04581; the
    top-k is the code's OHEM-style selection).
    """
    diff = (max_onehot(target.detach()) - refined).abs().flatten(1)
    k = max(1, int(diff.shape[1] * top_ratio))
    return diff.topk(k, dim=1).values.mean()


def min_pool_loss(fg: Tensor) -> Tensor:
    """Mean of the ReLU'd lowest quarter of the per-pixel max over fg maps ``(B, K, h, w)``.

    The code's ``adaptive_min_pooling_loss`` (not in the paper): it pushes the least active pixels of the
    refined maps to zero, which "changes the optimal background score" only.
    """
    b, _, h, w = fg.shape
    k = max(1, h * w // 4)
    return F.relu(fg.amax(dim=1).flatten(1).topk(k, dim=1, largest=False).values).sum() / (k * b)


@register_method
class SEAM(WSOLModule):
    """Siamese CAM training with equivariance (ER), a pixel correlation module and cross regularization (ECR).

    Each batch goes through the network as ``I`` and ``A(I)``. The loss is
    ``L_cls + min_pool_weight * L_minpool + er_weight * L_ER + ecr_weight * L_ECR`` (all weights 1 in the
    code), with ``L_cls`` the mean of the two branches' classification losses (CE or BCE per ``multilabel``)
    and the maps normalised by :func:`~wsol.models.pcm.relu_minmax` at each branch's input resolution, masked
    by the classes present (a mixed target > 0), with background ``1 - max_c`` for ECR.

    The network is :class:`~wsol.models.seam_net.SEAMNet`. Its CAM head is a bias-free 1x1 conv after
    ``Dropout2d`` (SEAM's ``fc8``); its background slot is never supervised in SEAM, so it is synthesised instead.
    Logits are the GAP of the raw CAM (the code pools the map upsampled with ``align_corners=True``, which only
    reweights edge pixels). The PCM sees detached features: the backbone's output, or the outputs of ``pcm_layers``:
    names from ``backbone.named_modules()``, e.g. a ResNet's layer2/layer3 (``["body.5", "body.6"]`` for the default
    stem), the closest to SEAM's conv4/conv5. Inference maps (``cams``) are the PCM's, as in SEAM, unless
    ``cam_source="cam"``.

    SEAM's recipe: lr 0.01 at batch 8, weight decay 5e-4, poly schedule, BN frozen (``freeze_bn``) on a
    pretrained backbone.

    Args:
        transform: the equivariance transform ``A``; ``rescale`` is SEAM's, the others are for ablation.
        scale_factor: rescale factor (0.3 in the code).
        rotation_degrees: rotation angle of ``rotation``.
        translation: shift of ``translation``, as a fraction of the image size.
        dropout: ``Dropout2d`` rate before the CAM head (0.5 in SEAM).
        pcm_layers: backbone submodules whose outputs feed the PCM; None for the backbone output.
        pcm_channels: projection width of each PCM input.
        er_weight: weight of ``L_ER``.
        ecr_weight: weight of ``L_ECR``.
        min_pool_weight: weight of the min-pool term (the code adds it to ``L_cls``).
        ecr_top_ratio: fraction of hardest entries averaged by ECR.
        cam_source: maps returned by ``forward_with_cams``/``cams``: PCM output or raw CAM.
        new_lr_mult: lr multiplier of the new layers (head, PCM); SEAM uses 10.
        bias_lr_mult: lr multiplier of biases and norm parameters; SEAM uses 2 (no weight decay).
        freeze_bn: keep the backbone's BatchNorm layers in eval mode with frozen affine parameters.
        official_optimizer: reproduce SEAM's ``PolyOptimizer``, which passes weight decay positionally into
            SGD's momentum slot (effective momentum 5e-4) and decays lr by ``(1 - t / T)^0.9``. Default False:
            the base optimizer with the configured ``momentum`` (0.9), i.e. the corrected behaviour.
        **kwargs: :class:`~wsol.methods.base.WSOLModule` arguments (backbone, num_classes, mixer, ...).
    """

    def __init__(
        self,
        transform: Transform = "rescale",
        scale_factor: float = 0.3,
        rotation_degrees: float = 90.0,
        translation: float = 0.125,
        dropout: float = 0.5,
        pcm_layers: list[str] | None = None,
        pcm_channels: int = 128,
        er_weight: float = 1.0,
        ecr_weight: float = 1.0,
        min_pool_weight: float = 1.0,
        ecr_top_ratio: float = 0.2,
        cam_source: Literal["pcm", "cam"] = "pcm",
        new_lr_mult: float = 10.0,
        bias_lr_mult: float = 2.0,
        freeze_bn: bool = False,
        official_optimizer: bool = False,
        **kwargs: Any,
    ) -> None:
        if transform not in ("rescale", "flip", "rotation", "translation"):
            raise ValueError(f"unknown transform {transform!r}")
        if cam_source not in ("pcm", "cam"):
            raise ValueError(f"cam_source must be 'pcm' or 'cam', got {cam_source!r}")
        if not 0.0 < ecr_top_ratio <= 1.0:
            raise ValueError(f"ecr_top_ratio must be in (0, 1], got {ecr_top_ratio}")
        super().__init__(**kwargs)
        self._freeze_bn()

    def build_network(self, backbone: nn.Module) -> SEAMNet:
        hp = self.hparams
        return SEAMNet(backbone, hp.num_classes, hp.dropout, hp.pcm_layers, hp.pcm_channels, hp.cam_source)

    def apply_transform(self, x: Tensor) -> Tensor:
        """The configured transform ``A`` (see :func:`equivariant_transform`)."""
        hp = self.hparams
        return equivariant_transform(x, hp.transform, hp.scale_factor, hp.rotation_degrees, hp.translation)

    # --------------------------------------------------------------------------------------- loss
    def loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        hp = self.hparams
        mixed = self.mix(batch["image"], self.targets(batch))
        images, targets = mixed.images, mixed.targets
        present = (targets > 0).to(images.dtype)[:, :, None, None]
        label = torch.cat([torch.ones_like(present[:, :1]), present], dim=1)  # background always present
        images2 = self.apply_transform(images)
        logits1, cam1, rv1 = self.net.seam_forward(images)
        logits2, cam2, rv2 = self.net.seam_forward(images2)
        cls = (self.classification_loss(logits1, targets) + self.classification_loss(logits2, targets)) / 2

        # The code compares the maps at the input resolution of each branch.
        def up(maps: Tensor, like: Tensor) -> Tensor:
            return F.interpolate(maps, like.shape[-2:], mode="bilinear", align_corners=True)

        cam1, rv1, cam2, rv2 = up(cam1, images), up(rv1, images), up(cam2, images2), up(rv2, images2)
        min_pool = (min_pool_loss((rv1 * label)[:, 1:]) + min_pool_loss((rv2 * label)[:, 1:])) / 2
        fg1 = self.apply_transform(relu_minmax(cam1)) * present  # A(F(I))
        fg2 = relu_minmax(cam2) * present  # F(A(I))
        er = er_loss(fg1, fg2)  # ER, Eq. (3) of arXiv 2004.04581
        rv1 = self.apply_transform(relu_minmax(rv1)) * label  # A(F^o(I))
        rv2 = relu_minmax(rv2) * label  # F^o(A(I))
        # ECR, Eq. (6) of arXiv 2004.04581: each branch's PCM output against the other's plain CAM.
        ecr = ecr_loss(with_background(fg2), rv1, hp.ecr_top_ratio) + ecr_loss(
            with_background(fg1), rv2, hp.ecr_top_ratio
        )
        total = cls + hp.min_pool_weight * min_pool + hp.er_weight * er + hp.ecr_weight * ecr + mixed.extra_loss()
        return total, {"cls": cls, "min_pool": min_pool, "er": er, "ecr": ecr, **mixed.losses}

    # --------------------------------------------------------------------------------- optimizers
    def _freeze_bn(self) -> None:
        if self.hparams.freeze_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> SEAM:
        """Switch modes, keeping frozen BatchNorm layers in eval mode (Lightning calls ``train()`` every epoch)."""
        super().train(mode)
        if "freeze_bn" in self.hparams:
            self._freeze_bn()
        return self

    def parameter_groups(self) -> list[dict[str, Any]]:
        """SEAM's groups: backbone x1, new layers (head, PCM) x ``new_lr_mult``; biases/norms x ``bias_lr_mult``."""
        lr, wd, hp = self.effective_lr(), self.hparams.weight_decay, self.hparams
        groups = []
        for modules, mult in (((self.backbone,), 1.0), (self.head_modules(), hp.new_lr_mult)):
            params = [p for m in modules for p in m.parameters() if p.requires_grad]
            groups.append({"params": [p for p in params if p.ndim > 1], "lr": lr * mult, "weight_decay": wd})
            groups.append(
                {"params": [p for p in params if p.ndim <= 1], "lr": lr * mult * hp.bias_lr_mult, "weight_decay": 0.0}
            )
        return [g for g in groups if g["params"]]

    def configure_optimizers(self) -> dict[str, Any]:
        if not self.hparams.official_optimizer:
            return super().configure_optimizers()
        groups = self.parameter_groups()
        # PolyOptimizer calls SGD(params, lr, weight_decay): the decay lands in the momentum slot
        # (docs/methods.md §1.4).
        opt = torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=self.hparams.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: (1 - min(step, total - 1) / total) ** 0.9)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
