"""The ``wsol`` command line: one subcommand per module in :mod:`wsol.commands`.

Each command module defines ``register(subparsers)``, which adds its parser and sets ``func`` to the
function that runs it. Heavy imports stay inside those functions so ``wsol --help`` is quick.

Plugins (:mod:`wsol.plugins`) load before any argument is parsed: every ``--import MODULE`` on the command line
(before or after the command's name), then ``WSOL_PLUGINS`` and the ``wsol.plugins`` entry points, so a backbone,
method or study row of the user's is known to every command and to its ``--help``.
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
    parser.add_argument(
        "--import",
        dest="plugins",
        metavar="MODULE",
        action="append",
        default=[],
        help="import a plugin module that registers backbones, methods, CAM methods, mixers, readers or study rows "
        "(repeatable; also WSOL_PLUGINS=mod_a,mod_b and the 'wsol.plugins' entry points; any command takes it)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        module = importlib.import_module(f"wsol.commands.{name.replace('-', '_')}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wsol`` console script; returns the process exit code."""
    from wsol.plugins import load_plugins, split_import_flags

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        modules, argv = split_import_flags(argv)
        load_plugins(modules)
    except (ValueError, ImportError) as err:
        if os.environ.get("WSOL_DEBUG"):
            raise
        command = next((item for item in argv if not item.startswith("-")), None)
        print(f"wsol{' ' + command if command else ''}: error: {err}", file=sys.stderr)
        return 2
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
