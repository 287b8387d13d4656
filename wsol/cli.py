"""The ``wsol`` command line: one subcommand per module in :mod:`wsol.commands`.

Each command module defines ``register(subparsers)``, which adds its parser and sets ``func`` to the
function that runs it. Heavy imports stay inside those functions so ``wsol --help`` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Order is the order shown by ``wsol --help``.
_COMMANDS: tuple[str, ...] = (
    "quickstart",
    "train",  # registers train (an alias of fit), fit, validate and test
    "evaluate",
    "metadata",
    "cams",
    "leaderboard",
    "pseudo-masks",
    "export",
    "bench",
    "study",
    "backbones",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="wsol",
        description="Weakly supervised object localization and segmentation toolkit.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        module = importlib.import_module(f"wsol.commands.{name.replace('-', '_')}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wsol`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except (OSError, ValueError, KeyError, ImportError) as err:
        # OSError covers missing files, folders given where a file is expected and permissions;
        # bad input is reported as one clear line; WSOL_DEBUG=1 shows the traceback.
        if os.environ.get("WSOL_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"wsol {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    raise SystemExit(main())
