"""The LightningCLI behind ``wsol train``: any WSOL method, any datamodule, one YAML per experiment.

A config names every part by ``class_path`` (model, mixer, data; a backbone either by registered name or by
``class_path`` of an ``nn.Module`` with ``out_channels``/``stride``), e.g.::

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
"""

from __future__ import annotations

import warnings
from typing import Any

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from wsol.data.datamodule import WSOLDataModule
from wsol.methods.base import WSOLModule

__all__ = ["WSOLCLI", "train"]


class WSOLCLI(LightningCLI):
    """LightningCLI over :class:`WSOLModule` subclasses and :class:`WSOLDataModule` (sub)classes.

    It never runs a subcommand itself (``run=False``): :func:`train` fits, and tests build it to check that
    a config instantiates. ``--ckpt_path`` resumes a fit from a checkpoint.

    Args:
        args: command-line arguments (``None`` reads ``sys.argv``), e.g. ``["--config", "x.yaml"]``.
        **kwargs: further :class:`~pytorch_lightning.cli.LightningCLI` arguments.
    """

    def __init__(self, args: list[str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
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
        parser.add_argument("--ckpt_path", type=str | None, default=None, help="checkpoint to resume the fit from")


def train(args: list[str] | None = None) -> WSOLCLI:
    """Build the CLI from ``args`` and fit; returns the CLI (its ``trainer`` holds the logged metrics)."""
    cli = WSOLCLI(args)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
    return cli
