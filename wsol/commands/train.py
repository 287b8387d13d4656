"""``wsol fit | validate | test | predict`` (and ``wsol train``, an alias of ``fit``): LightningCLI from a YAML config.

``fit`` trains any method on any dataset (see ``experiments/``); ``validate`` and ``test`` score a model, typically
a checkpoint given with ``--ckpt_path`` (``last``: the run folder's ``last.ckpt``), on the datamodule's
validation split, so re-scoring a checkpoint needs no script; ``predict`` writes its score maps and metadata in
the reference layout into ``--out`` (``wsol.training.prediction``), for ``wsol evaluate``.
"""

from __future__ import annotations

import argparse

_STAGES = {
    "train": ("fit", "train a model from a LightningCLI YAML (alias of 'wsol fit')"),
    "fit": ("fit", "train a model from a LightningCLI YAML (wsol fit --config experiments/FILE.yaml)"),
    "validate": ("validate", "score a model or checkpoint on the validation split (--config FILE --ckpt_path CKPT)"),
    "test": ("test", "score a model or checkpoint on the datamodule's test split (--config FILE --ckpt_path CKPT)"),
    "predict": ("predict", "write score maps in the reference layout (--config FILE --ckpt_path CKPT --out DIR)"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, (stage, text) in _STAGES.items():
        # Everything after the command goes to LightningCLI untouched: no "-" prefix is ours, so "--config",
        # "--trainer.max_epochs" and "--help" all land in `args` instead of failing here.
        p = subparsers.add_parser(
            name,
            help=text,
            description=f"{text}; 'wsol {name} --help' lists every option.",
            add_help=False,
            prefix_chars="+",
        )
        p.add_argument("args", nargs=argparse.REMAINDER, help="LightningCLI arguments, e.g. --config FILE")
        p.set_defaults(func=run, stage=stage, prog=f"wsol {name}")


def run(args: argparse.Namespace) -> int:
    from wsol.training.lightning_cli import run_stage

    run_stage(args.stage, list(args.args), prog=args.prog)
    return 0
