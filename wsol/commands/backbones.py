"""``wsol backbones``: print the registered backbone names, one per line."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "backbones",
        help="list the registered backbones",
        description="Print the registered backbone names, one per line (any 'timm:<model>' works too).",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wsol.models import list_backbones

    for name in list_backbones():
        print(name)
    return 0
