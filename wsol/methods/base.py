"""The shared training system: a network (:mod:`wsol.models`), losses, optimizers and logging.

Methods subclass :class:`WSOLModule` and override :meth:`WSOLModule.loss` (and, where the method changes the
network, :meth:`WSOLModule.build_network`, returning a :class:`~wsol.models.cam_net.CAMNet`). Everything else —
optimizers, the linear LR-scaling rule, L1/L2 penalties, label smoothing, mixing and the validation metrics —
lives here once. The network is ``self.net``; export, post-hoc CAMs and WSSS use it alone.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from wsol.augment.base import Mixer, MixOutput
from wsol.metrics import DEFAULT_PERCENTILE, BoxLocalizationMetric, check_normalization, prepare_scoremaps
from wsol.models import create_backbone
from wsol.models.backbone import backbone_record
from wsol.models.cam_net import CAMNet
from wsol.models.contract import backbone_contract
from wsol.models.head import CAMHead
from wsol.seeding import seed_torch_for_step


class WSOLModule(pl.LightningModule):
    """A classifier whose class activation maps localize objects.

    Args:
        backbone: a registered backbone name (see :func:`wsol.models.list_backbones`) or a module keeping the
            backbone contract (:mod:`wsol.models.contract`). A checkpoint records the name and its arguments (a
            module's class and arguments when it was given as a YAML ``class_path``) and the plugin that registered
            it, so that :func:`wsol.load_model` can rebuild it.
        num_classes: number of classes K.
        backbone_kwargs: options for the backbone builder (e.g. ``{"stem_stride": 1}``).
        pretrained: load the backbone's pretrained weights.
        multilabel: multi-hot targets with a sigmoid BCE loss instead of softmax cross-entropy.
        mixer: batch-level mixed-sample augmentation applied to training batches (``wsol.augment``). A mixer that
            owns modules (AutoMix) builds them here; they are kept as ``mix_modules``, trained at ``lr``.
        optimizer: ``"sgd"`` (momentum, nesterov off) or ``"adamw"``.
        lr: base learning rate; with ``scale_lr`` it is given per 256 images.
        scale_lr: linear scaling rule, ``lr * batch_size / 256`` (Goyal et al., 2017).
        batch_size: batch size for the scaling rule; by default read from the datamodule.
        momentum: SGD momentum (AdamW's beta1 is left at its default).
        weight_decay: decoupled/coupled decay of the optimizer, on weights only (not biases or norms).
        label_smoothing: epsilon of label smoothing, ``(1 - eps) * y + eps / K`` (``eps / 2`` for BCE).
        l1: weight of an explicit ``sum |w|`` penalty added to the loss.
        l2: weight of an explicit ``sum w^2`` penalty added to the loss.
        lr_schedule: ``"cosine"`` (per step, to zero), ``"poly"`` (``(1 - t / T) ** 0.9``, SEAM/psa) or
            ``"constant"``.
        warmup_epochs: linear warm-up length in epochs (may be fractional).
        head_lr_mult: learning-rate multiplier of the CAM head (e.g. 10 on a pretrained backbone).
        cam_curve_interval: threshold step of the validation localization metric.
        normalization: how the validation metric turns upsampled raw CAMs into score maps: ``"minmax"`` (the
            reference protocol), ``"max"``, ``"pas"`` or ``"ivr"`` (Kim et al., ICCV 2021; see
            :func:`wsol.metrics.normalize_scoremaps`).
        percentile: IVR's percentile in [0, 1) (used by ``normalization="ivr"`` only).
    """

    def __init__(
        self,
        backbone: str | nn.Module = "resnet10",
        num_classes: int = 10,
        backbone_kwargs: dict[str, Any] | None = None,
        pretrained: bool = False,
        multilabel: bool = False,
        mixer: Mixer | None = None,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.1,
        scale_lr: bool = True,
        batch_size: int | None = None,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        label_smoothing: float = 0.0,
        l1: float = 0.0,
        l2: float = 0.0,
        lr_schedule: Literal["cosine", "poly", "constant"] = "cosine",
        warmup_epochs: float = 0.0,
        head_lr_mult: float = 1.0,
        cam_curve_interval: float = 0.01,
        normalization: str = "minmax",
        percentile: float = DEFAULT_PERCENTILE,
    ) -> None:
        super().__init__()
        check_normalization(normalization, percentile)
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
        if lr_schedule not in ("cosine", "poly", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine', 'poly' or 'constant', got {lr_schedule!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        # A backbone passed as a module is not serialisable as a hyper-parameter; its name is.
        self.save_hyperparameters(ignore=["mixer"] + ([] if isinstance(backbone, str) else ["backbone"]))
        if isinstance(backbone, str):
            backbone = create_backbone(backbone, pretrained=pretrained, **(backbone_kwargs or {}))
        backbone_contract(backbone)  # before a method's network reads its channels
        self.net = self.build_network(backbone)
        self.net.multilabel = multilabel
        self.mixer = mixer
        # Modules a dynamic mixer trains beside the network (AutoMix): saved, moved and optimised with the method.
        self.mix_modules = mixer.build_modules(self.net) if mixer is not None else None
        # Streaming MaxBoxAcc state (fixed size, summed across DDP ranks); fed by single-label data with boxes.
        self.val_localization = BoxLocalizationMetric(cam_curve_interval=cam_curve_interval)
        # Summed over images and synced over ranks (sum states): every rank logs the whole set's numbers.
        self.val_loss, self.val_top1 = MeanMetric(), MeanMetric()

    # ------------------------------------------------------------------------------------ network
    def build_network(self, backbone: nn.Module) -> CAMNet:
        """The network this method trains (called once in ``__init__``, hyper-parameters already saved): the
        backbone and a :class:`~wsol.models.head.CAMHead`. Methods that change the network override this."""
        return CAMNet(backbone, CAMHead(backbone.out_channels, self.hparams.num_classes))

    @property
    def backbone(self) -> nn.Module:
        """The network's backbone."""
        return self.net.backbone

    @property
    def head(self) -> nn.Module:
        """The network's classifier head."""
        return self.net.head

    def __setattr__(self, name: str, value: Any) -> None:
        # ``system.head = ...`` replaces the network's head (nn.Module would register a stray module instead).
        if name in ("backbone", "head") and "net" in self._modules:
            setattr(self.net, name, value)
        else:
            super().__setattr__(name, value)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone feature map ``(B, C, h, w)``."""
        return self.net.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)``."""
        return self.net(x)

    def forward_with_cams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, K)`` and every class's map ``(B, K, h, w)``, from the network."""
        return self.net.forward_with_cams(x)

    def cams(self, x: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Raw class activation maps at feature resolution: the network's (:meth:`CAMNet.cams`)."""
        return self.net.cams(x, classes)

    # ------------------------------------------------------------------------------------- losses
    def targets(self, batch: dict[str, Any]) -> torch.Tensor:
        """One-hot or multi-hot float targets ``(B, K)`` of a batch."""
        return batch["target"].float()

    def smooth(self, targets: torch.Tensor) -> torch.Tensor:
        """Label smoothing: ``(1 - eps) y + eps / K`` for softmax, ``(1 - eps) y + eps / 2`` for BCE."""
        eps = self.hparams.label_smoothing
        if eps == 0.0:
            return targets
        spread = 2 if self.hparams.multilabel else targets.shape[1]
        return targets * (1.0 - eps) + eps / spread

    def classification_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Soft-target cross-entropy (single-label) or BCE (multi-label), with label smoothing."""
        targets = self.smooth(targets)
        if self.hparams.multilabel:
            return F.binary_cross_entropy_with_logits(logits, targets)
        return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()

    def mix(self, images: torch.Tensor, targets: torch.Tensor) -> MixOutput:
        """The configured mixer applied to a training batch, with this method as its context (dynamic mixers read
        the network and loss from it). Add ``MixOutput.extra_loss()`` to the loss: the mixer's own terms."""
        if self.mixer is None:
            return Mixer.unmixed(images, targets)
        return self.mixer.mix_batch(self, images, targets)

    def training_progress(self) -> float:
        """Fraction of the training steps done, in [0, 1]; 0 outside a Trainer (a dynamic mixer's schedules)."""
        if self._trainer is None:
            return 0.0
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total) or total <= 0:
            return 0.0
        return min(1.0, self.global_step / total)

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss of a batch and its named terms (for logging). Methods override this."""
        mixed = self.mix(batch["image"], self.targets(batch))
        cls = self.classification_loss(self(mixed.images), mixed.targets)
        return cls + mixed.extra_loss(), {"cls": cls, **mixed.losses}

    def regularization(self) -> torch.Tensor:
        """Explicit L1 / L2 penalties over weight tensors (biases and norm parameters excluded)."""
        l1, l2 = self.hparams.l1, self.hparams.l2
        total = torch.zeros((), device=self.device)
        if l1 == 0.0 and l2 == 0.0:
            return total
        for p in self.parameters():
            if p.requires_grad and p.ndim > 1:
                if l1:
                    total = total + l1 * p.abs().sum()
                if l2:
                    total = total + l2 * p.pow(2).sum()
        return total

    # ----------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, terms = self.loss(batch)
        reg = self.regularization()
        total = loss + reg
        bs = batch["image"].shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=bs)
        if self.hparams.l1 or self.hparams.l2:
            self.log("train/reg", reg, batch_size=bs)
        return total

    # --------------------------------------------------------------------------------- validation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        images, targets = batch["image"], self.targets(batch)
        bs = images.shape[0]
        single_label = not self.hparams.multilabel and "label" in batch
        if single_label:  # the map of the GT class as every scorer makes it (CAMNet.logits_and_cams)
            logits, gt_maps = self.net.logits_and_cams(images, batch["label"])
        else:
            logits = self.forward_with_cams(images)[0]
        self.val_loss.update(self.classification_loss(logits, targets), weight=bs)
        self.log("val/loss", self.val_loss, prog_bar=True, on_step=False, on_epoch=True)
        if not single_label:
            return
        labels = batch["label"]
        correct = logits.argmax(dim=1) == labels
        self.val_top1.update(correct.float() * 100)
        self.log("val/top1_acc", self.val_top1, prog_bar=True, on_step=False, on_epoch=True)
        if batch.get("boxes") is not None:
            scoremaps = prepare_scoremaps(
                gt_maps.detach(),
                tuple(images.shape[-2:]),
                normalization=self.hparams.normalization,
                percentile=self.hparams.percentile,
            )
            self.val_localization.update(scoremaps, list(batch["boxes"]), correct)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """The protocol's score maps of a batch, as validation makes them: each image's GT-class map (top-1 class
        without labels) upsampled bicubically to the input size and normalised; with the top-1 classes, ids and
        boxes (in the input's pixels) for :class:`wsol.training.prediction.ReferenceLayoutWriter`."""
        images = batch["image"]
        if "label" in batch and not self.hparams.multilabel:
            classes = batch["label"]
            logits, gt_maps = self.net.logits_and_cams(images, classes)
            predicted = logits.argmax(dim=1)
        else:
            logits, maps = self.forward_with_cams(images)
            predicted = classes = logits.argmax(dim=1)
            gt_maps = maps[torch.arange(images.shape[0], device=maps.device), classes]
        scoremaps = prepare_scoremaps(
            gt_maps.detach(),
            tuple(images.shape[-2:]),
            normalization=self.hparams.normalization,
            percentile=self.hparams.percentile,
        )
        return {
            "image_id": list(batch["image_id"]),
            "scoremaps": scoremaps.cpu(),
            "label": classes.cpu(),
            "predicted": predicted.cpu(),
            "boxes": [b.cpu() for b in batch["boxes"]],
            "size": tuple(images.shape[-2:]),
        }

    def on_validation_epoch_end(self) -> None:
        if not self.val_localization.update_count:
            return
        for name, value in self.val_localization.compute().items():
            self.log(f"val/{name}", value, prog_bar=name == "MaxBoxAccV2")
        self.val_localization.reset()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.seed_step(self.current_epoch, batch_idx, self.global_rank)

    def seed_step(self, epoch: int, batch_idx: int, rank: int = 0) -> None:
        """Reseed every random source of a training step from ``(seed, epoch, batch_idx)``; run before each batch.

        Under DDP the ``rank`` joins the keys beyond rank 0 (:func:`wsol.seeding.rank_keys`), so ranks draw
        different mixes, hidden patches and dropout; a single process draws as ``rank = 0``.

        The mixer, torch's global RNG (dropout; only under ``pl.seed_everything``, see
        :func:`wsol.seeding.seed_torch_for_step`) and, in methods that extend this, their own generators then
        draw as a pure function of where training is, so a run resumed from a checkpoint replays the
        uninterrupted run's draws with no generator state in the checkpoint.
        """
        seed_torch_for_step(epoch, batch_idx, rank)
        if self.mixer is not None and hasattr(self.mixer, "seed_step"):
            self.mixer.seed_step(epoch, batch_idx, rank)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Record what the checkpoint needs (wsol.methods.checkpoint): the method's registered name, its backbone's
        # name and arguments, and the plugins that registered them. Names only: loading imports nothing.
        from wsol.methods.registry import METHODS

        name, module = type(self).__name__, type(self).__module__
        checkpoint["wsol_method"] = f"{module}.{type(self).__qualname__}"
        if METHODS.get(name) is type(self) if name in METHODS else False:
            method_plugin = METHODS.origin(name)
        else:  # a class passed as method_class: the module that defines it
            method_plugin = None if module.startswith("wsol.") or module == "__main__" else module
        checkpoint["wsol_needs"] = {
            "method": {"name": name, "plugin": method_plugin},
            "backbone": backbone_record(self.backbone),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints written before the network moved into ``self.net`` name its weights without the prefix.
        state = checkpoint.get("state_dict")
        if isinstance(state, dict):
            state = migrate_state_dict(state, self.state_dict().keys())
            if self.mix_modules is None:
                # A mixer's modules (AutoMix) only serve training: a method rebuilt without that mixer (inference,
                # ``load_checkpoint``) leaves them out; resuming with the mixer configured restores them.
                state = {key: value for key, value in state.items() if not key.startswith("mix_modules.")}
            checkpoint["state_dict"] = state

    # --------------------------------------------------------------------------------- optimizers
    def effective_lr(self) -> float:
        """The learning rate after the linear scaling rule."""
        lr = self.hparams.lr
        if not self.hparams.scale_lr:
            return lr
        batch_size = self.hparams.batch_size
        if batch_size is None:
            datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
            batch_size = getattr(datamodule, "batch_size", None)
        if batch_size is None:
            raise ValueError("scale_lr=True needs the batch size: pass batch_size= or use a datamodule with one")
        return lr * batch_size / 256

    def head_modules(self) -> tuple[nn.Module, ...]:
        """Modules trained at ``lr * head_lr_mult``: what the network adds on top of the backbone (its head, ...),
        plus what a method adds for training only."""
        return self.net.new_modules()

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups: backbone and head modules (and a mixer's modules, at ``lr``), weights decayed,
        biases and norms not."""
        lr, wd = self.effective_lr(), self.hparams.weight_decay
        groups = []
        mixer_modules = (self.mix_modules,) if self.mix_modules is not None else ()
        sets = (((self.backbone,), 1.0), (self.head_modules(), self.hparams.head_lr_mult), (mixer_modules, 1.0))
        for modules, mult in sets:
            params = [p for module in modules for p in module.parameters() if p.requires_grad]
            decay = [p for p in params if p.ndim > 1]
            no_decay = [p for p in params if p.ndim <= 1]
            groups.append({"params": decay, "lr": lr * mult, "weight_decay": wd})
            groups.append({"params": no_decay, "lr": lr * mult, "weight_decay": 0.0})
        return [g for g in groups if g["params"]]

    def configure_optimizers(self) -> dict[str, Any]:
        groups = self.parameter_groups()
        if self.hparams.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=self.hparams.momentum)
        else:
            opt = torch.optim.AdamW(groups, lr=groups[0]["lr"])
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = int(round(self.hparams.warmup_epochs * total / epochs))
        schedule = self.hparams.lr_schedule

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            if schedule == "cosine":
                return 0.5 * (1.0 + math.cos(math.pi * progress))
            if schedule == "poly":
                return (1.0 - progress) ** 0.9
            return 1.0

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def migrate_state_dict(state: dict[str, Any], expected: Any) -> dict[str, Any]:
    """``state`` with the keys of an older layout (``backbone.*``, ``head.*``, ... at the top) moved under ``net.``
    where that is where ``expected`` (the module's own keys) has them; every other key is left as it is."""
    expected = set(expected)
    return {
        (f"net.{key}" if key not in expected and f"net.{key}" in expected else key): value
        for key, value in state.items()
    }
