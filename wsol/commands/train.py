"""``wsol train``: fit any method on any dataset from a LightningCLI config (see ``experiments/``)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    # Everything after "train" goes to LightningCLI untouched: no "-" prefix is ours, so
    # "--config", "--trainer.max_epochs" and "--help" all land in `args` instead of failing here.
    p = subparsers.add_parser(
        "train",
        help="train a model from a LightningCLI YAML (wsol train --config experiments/FILE.yaml)",
        description="Train from a LightningCLI config; 'wsol train --help' lists every option.",
        add_help=False,
        prefix_chars="+",
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help="LightningCLI arguments, e.g. --config FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wsol.lightning_cli import train

    train(list(args.args))
    return 0
