"""The LightningCLI behind ``wsol train``: any WSOL method, any datamodule, one YAML per experiment.

A config names every part by ``class_path`` (model, mixer, data; a backbone either by registered name, with
``backbone_kwargs``, or by ``class_path`` of an ``nn.Module`` keeping the backbone contract, whose ``init_args``
its checkpoints record), e.g.::

    model:
      class_path: wsol.methods.CAM
      init_args:
        backbone: vgg16
        mixer: {class_path: wsol.augment.CutMix, init_args: {alpha: 1.0}}
    data:
      class_path: wsol.data.WSOLDataModule
      init_args: {dataset: cub, image_size: 224, batch_size: 32}

The model's ``num_classes`` and ``multilabel`` are not written in configs: they are linked from the
instantiated datamodule, so one config cannot disagree with its data.

Resuming: ``trainer.default_root_dir`` is the run's folder. Unless the config names a ``ModelCheckpoint``,
one saving ``last.ckpt`` after every training epoch goes to ``<default_root_dir>/checkpoints``, and the default
logger writes to ``<default_root_dir>/lightning_logs/version_0`` on every start, so after a crash the same
command with ``--ckpt_path last`` continues in the same folders (a fresh run there replaces both; Lightning
warns). The data order and augmentation (:mod:`wsol.data.sampling`) and the training draws
(:meth:`wsol.methods.base.WSOLModule.seed_step`) are functions of (seed, epoch, step), so the resumed run
ends with the uninterrupted run's weights. A kill mid-epoch resumes from the previous epoch's end.

Scoring a run (``validate``, ``test``, ``predict``) pointed at its folder writes nothing there: no default logger
(the pinned ``version_0`` would resume and rewrite the training log) and no ``config.yaml``; a logger the config
names still logs where it says. ``trainer.limit_*`` options read ``1`` as one batch (Lightning's annotation would
make it ``1.0``, the whole epoch).
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import warnings
from typing import Any

from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from wsol.data.datamodule import WSOLDataModule
from wsol.methods.base import WSOLModule
from wsol.training.callbacks import SafeNameCheckpoint, safe_checkpoint_names
from wsol.training.resumable_csv import ResumableCSVLogger

__all__ = ["WSOLCLI", "last_checkpoint", "train"]

CHECKPOINT_DIR = "checkpoints"
LOG_NAME, LOG_VERSION = "lightning_logs", 0


class WSOLCLI(LightningCLI):
    """LightningCLI over :class:`WSOLModule` subclasses and :class:`WSOLDataModule` (sub)classes.

    It never runs a subcommand itself (``run=False``): :func:`train` fits, and tests build it to check that
    a config instantiates. ``--ckpt_path`` resumes a fit from a checkpoint; ``--ckpt_path last`` from the
    run folder's ``last.ckpt`` (see the module docstring for the folders it fixes).

    Args:
        args: command-line arguments (``None`` reads ``sys.argv``), e.g. ``["--config", "x.yaml"]``.
        **kwargs: further :class:`~pytorch_lightning.cli.LightningCLI` arguments.
    """

    def __init__(self, args: list[str] | None = None, stage: str = "fit", **kwargs: Any) -> None:
        self.stage = stage
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        if stage != "fit":  # scoring a run must not rewrite its config.yaml (nor write one into its folder)
            kwargs.setdefault("save_config_callback", None)
        kwargs.setdefault("seed_everything_default", 0)
        parser_kwargs = {"prog": "wsol train", "description": "Train a WSOL/WSSS model from a LightningCLI config."}
        with warnings.catch_warnings():
            # `wsol train ...` and tests pass argv as `args`; LightningCLI would warn that sys.argv differs.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            # jsonargparse >= 4.49 deprecates APIs that pytorch_lightning.cli calls; nothing a user can act on.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pytorch_lightning\.cli")
            super().__init__(
                WSOLModule,
                WSOLDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                auto_configure_optimizers=False,  # optimizers are the methods' (lr scaling, groups, schedules)
                parser_kwargs=kwargs.pop("parser_kwargs", parser_kwargs),
                args=args,
                run=False,
                **kwargs,
            )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.multilabel", "model.init_args.multilabel", apply_on="instantiate")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="checkpoint to resume the fit from; 'last' resumes the run folder's last.ckpt, if there is one",
        )
        parser.add_argument(
            "--out",
            type=str | None,
            default=None,
            help="wsol predict: folder for the score maps and metadata in the reference layout",
        )
        parser.add_argument(
            "--overwrite",
            type=bool,
            default=False,
            help="wsol predict: replace the outputs of an earlier run in --out (refused otherwise)",
        )
        _integer_limits(parser)

    def instantiate_classes(self) -> None:
        """Instantiate as LightningCLI does; a backbone given by ``class_path`` then records its arguments, so that
        checkpoints name its class and arguments and can be rebuilt (``wsol cams``, ``wsol export``, ...)."""
        super().instantiate_classes()
        from wsol.models.backbone import record_class_arguments

        given = self._get(self.config, "model", default=None)
        given = getattr(given, "init_args", None) if given is not None else None
        backbone = getattr(given, "backbone", None) if given is not None else None
        init_args = getattr(backbone, "init_args", None)
        if init_args is not None and hasattr(self.model, "net"):
            values = init_args.as_dict() if hasattr(init_args, "as_dict") else dict(vars(init_args))
            record_class_arguments(self.model.backbone, values)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The configured trainer, plus a fixed-folder ``last.ckpt`` checkpoint and logger (module docstring)."""
        config = self._get(self.config_init, "trainer", default={})
        if config.get("barebones"):  # no checkpoints or loggers to add
            return super().instantiate_trainer(**kwargs)
        root = os.fspath(config.get("default_root_dir") or os.getcwd())
        configured = config.get("callbacks") or []
        for callback in configured if isinstance(configured, list) else [configured]:
            if type(callback) is ModelCheckpoint:  # metric names such as val/MaxBoxAccV2 safe in file names
                safe_checkpoint_names(callback)
        if "callbacks" not in kwargs and config.get("enable_checkpointing") is not False:
            callbacks = config.get("callbacks") or []
            callbacks = list(callbacks) if isinstance(callbacks, list) else [callbacks]
            if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
                # save_on_train_epoch_end: with check_val_every_n_epoch > 1 Lightning would otherwise save only
                # after a validation, i.e. not after most epochs.
                last = SafeNameCheckpoint(
                    dirpath=os.path.join(root, CHECKPOINT_DIR), save_last=True, save_on_train_epoch_end=True
                )
                kwargs["callbacks"] = [*callbacks, last]
        if "logger" not in kwargs and config.get("logger") in (None, True):
            if self.stage == "fit":
                kwargs["logger"] = _fixed_logger(root, resume=self._get(self.config, "ckpt_path") is not None)
            else:  # validate/test/predict print their numbers; the training run's log stays as it is
                kwargs["logger"] = False
        return super().instantiate_trainer(**kwargs)


LIMIT_OPTIONS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")


def _integer_limits(parser: LightningArgumentParser) -> None:
    """Parse ``trainer.limit_*`` as ``int | float``: Lightning annotates them ``float | int``, so jsonargparse reads
    ``1`` (one batch) as ``1.0`` (the whole epoch). Trying int first keeps ``1`` one batch and ``0.25`` a fraction."""
    for action in parser._actions:
        if action.dest.removeprefix("trainer.") in LIMIT_OPTIONS and hasattr(action, "_typehint"):
            action._typehint = int | float | None


def _fixed_logger(root: str, resume: bool) -> list[Logger]:
    """TensorBoard (a dependency) with a CSV log beside it in one folder, its version pinned so that every start
    writes there: event files append, and the CSV keeps the rows of the epochs before a resume."""
    csv = ResumableCSVLogger(root, name=LOG_NAME, version=LOG_VERSION, resume=resume)
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        return [csv, TensorBoardLogger(root, name=LOG_NAME, version=LOG_VERSION)]  # CSV first: it makes the folder
    return [csv]


def last_checkpoint(trainer: Trainer) -> str | None:
    """The checkpoint ``trainer.fit(ckpt_path="last")`` would load (the newest ``last*.ckpt``), or None."""
    found: set[str] = set()
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint):
            # Lightning's own search for ckpt_path="last" (CheckpointConnector), so both agree on the folder.
            found |= {p for p in callback._find_last_checkpoints(trainer) if callback._fs.exists(p)}
    return max(found, key=lambda p: os.path.getmtime(p) if os.path.exists(p) else 0.0) if found else None


def run_stage(stage: str, args: list[str] | None = None, prog: str = "wsol fit") -> WSOLCLI:
    """Build the CLI from ``args`` and run ``stage`` (``fit``, ``validate``, ``test`` or ``predict``, which writes
    the validation split's score maps in the reference layout into ``--out``); returns the CLI.

    ``--ckpt_path last`` resolves to the run folder's newest ``last.ckpt``. For ``fit`` with none yet it starts
    from scratch, saying so, so one command both starts a run and resumes it after a crash; ``validate`` and
    ``test`` need a checkpoint to score.

    Raises:
        ValueError: an unknown stage, or ``validate``/``test`` with ``--ckpt_path last`` and no checkpoint.
    """
    if stage not in ("fit", "validate", "test", "predict"):
        raise ValueError(f"stage must be fit, validate, test or predict, got {stage!r}")
    cli = WSOLCLI(
        args, stage=stage, parser_kwargs={"prog": prog, "description": f"{prog}: LightningCLI from a YAML config."}
    )
    ckpt_path = cli.config.get("ckpt_path")
    if ckpt_path == "last":
        ckpt_path = last_checkpoint(cli.trainer)
        if ckpt_path is None:
            folders = sorted({str(c.dirpath) for c in cli.trainer.checkpoint_callbacks if getattr(c, "dirpath", None)})
            where = " or ".join(folders) or "the checkpoint folder"
            if stage != "fit":
                raise ValueError(f"--ckpt_path last: no last.ckpt in {where} to {stage}")
            rank_zero_info(f"wsol {stage}: --ckpt_path last: no last.ckpt in {where} yet; starting from scratch")
        else:
            rank_zero_info(f"wsol {stage}: {'resuming from' if stage == 'fit' else 'scoring'} {ckpt_path}")
    kwargs: dict[str, Any] = {}
    if stage == "predict":
        from wsol.training.prediction import ReferenceLayoutWriter

        if not cli.config.get("out"):
            raise ValueError("wsol predict needs --out DIR (the score maps and metadata go there)")
        cli.trainer.callbacks.append(
            ReferenceLayoutWriter(cli.config["out"], overwrite=bool(cli.config.get("overwrite")))
        )
        kwargs["return_predictions"] = False
    with warnings.catch_warnings():
        if ckpt_path is not None:  # the folder holds the run being resumed: that is the point, not a mistake
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        try:
            getattr(cli.trainer, stage)(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path, **kwargs)
        except pickle.UnpicklingError as err:
            # torch.load(weights_only=True) refused the file: nothing ran, nothing was unpickled.
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(
                f"--ckpt_path {ckpt_path}: not a plain checkpoint (it needs unpickling): {reason}"
            ) from None
    return cli


def train(args: list[str] | None = None) -> WSOLCLI:
    """``wsol fit``: build the CLI from ``args`` and fit (see :func:`run_stage`); returns the CLI."""
    return run_stage("fit", args)
