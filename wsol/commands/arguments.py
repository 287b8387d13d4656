"""The command line's shared vocabulary: one helper per option family, used by every command.

* ``--data NAME[=PATH]``: a registered reader and its folder (``$WSOL_DATA/<folder>`` without one); a bare
  folder whose layout is recognised (Tiny ImageNet, reference metadata) works too.
* ``--out DIR``: every command writes into a folder.
* ``--cam-method(s)``: post-hoc CAM methods; ``--method(s)`` is kept for training methods and study rows.
* ``--device``: every command that runs a model (``auto``: CUDA when available, else CPU).
* ``--no-*``: every negation.
* ``--normalization``/``--percentile``: how raw maps become [0, 1] score maps.

Old spellings stay accepted for one release through :func:`add_deprecated`, which prints one line naming the
new spelling. Building a parser imports nothing heavy: ``wsol --help`` starts without torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any


class _NormalizationOption(argparse.Action):
    """``--normalization``: stores the name; its metavar and help list :data:`wsol.metrics.NORMALIZATIONS`.

    The list is read only when help or usage is shown, so that building the parser stays free of heavy imports
    (and a rule registered later, by a plugin, is listed too); the value is checked when the command runs. While
    the option is being added (argparse formats its metavar once then), both answer None.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, what: str = "", **kwargs: Any) -> None:
        self._what, self.added = what, False
        super().__init__(option_strings, dest, **kwargs)

    @staticmethod
    def _rules() -> list[Any]:
        from wsol.metrics.normalization import normalization_rules

        return normalization_rules()

    @property
    def metavar(self) -> str | None:
        return "{" + ",".join(rule.name for rule in self._rules()) + "}" if self.added else None

    @metavar.setter
    def metavar(self, value: Any) -> None:  # set by argparse.Action.__init__; the property always answers
        pass

    @property
    def help(self) -> str | None:
        if not self.added:
            return None
        shown = "" if self.default is None else " (default: %(default)s)"
        rules = ", ".join(rule.cli for rule in self._rules())
        return f"{self._what or 'per-map normalisation of the upsampled raw CAMs'}; one of {rules}{shown}"

    @help.setter
    def help(self, value: Any) -> None:
        pass

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        setattr(namespace, self.dest, values)


def add_normalization_arguments(p: argparse.ArgumentParser, default: str | None = "minmax", what: str = "") -> None:
    """``--normalization`` and ``--percentile``: how raw maps become [0, 1] score maps (shared by the commands).

    Args:
        p: The command's parser.
        default: The rule used when the flag is absent (None: the command's maps need no normalisation).
        what: Help text saying what the rule applies to in this command.
    """
    p.add_argument("--normalization", default=default, action=_NormalizationOption, what=what).added = True
    p.add_argument(
        "--percentile",
        type=float,
        default=0.6,
        metavar="P",
        help="IVR's percentile in [0, 1): the value subtracted is the map's P-quantile (default: %(default)s)",
    )


def check_normalization_arguments(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` naming ``--normalization`` or ``--percentile`` unless both are valid."""
    from wsol.metrics import check_normalization

    try:
        check_normalization(args.normalization or "minmax", args.percentile)
    except ValueError as err:
        # The library's messages start with the argument's name; the flag is the same name with "--".
        raise ValueError(f"--{err}") from err


def normalization_record(normalization: str, percentile: float) -> dict:
    """What output files record: the rule and, if it reads one (IVR), the percentile it used."""
    from wsol.metrics.normalization import get_normalization

    return get_normalization(normalization, percentile).record(percentile)


def add_model_arguments(p: argparse.ArgumentParser, several: bool = False) -> None:
    """Model options shared with ``wsol leaderboard`` (``several``: comma-separated lists)."""
    if several:
        p.add_argument("--backbones", default="", help="comma-separated backbone names (see 'wsol backbones')")
        p.add_argument("--checkpoints", default="", help="comma-separated Lightning checkpoints of wsol.methods")
    else:
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--checkpoint", help="a Lightning checkpoint of a wsol.methods class")
        src.add_argument("--backbone", help="a registered backbone name (see 'wsol backbones') or timm:<model>")
    add_deprecated(p, "--checkpoint-class", None, "the class recorded in the checkpoint is always used")
    p.add_argument("--pretrained", action="store_true", help="load the backbone's pretrained weights and classifier")
    p.add_argument("--num-classes", type=int, default=None, help="classes of a random head (default: the dataset's)")
    p.add_argument("--backbone-kwargs", default=None, help="JSON options of the backbone, e.g. '{\"last_stride\": 1}'")
    p.add_argument("--seed", type=int, default=0, help="seed of a random head (default: %(default)s)")


def add_data_arguments(p: argparse.ArgumentParser, several: bool = False) -> None:
    """Data and protocol options shared with ``wsol leaderboard``."""
    p.add_argument(
        "--data",
        required=True,
        help=(
            "dataset: NAME[=PATH], a reader name ('synthetic', 'tiny_imagenet' from $WSOL_DATA, ...) with its "
            "folder, or a Tiny ImageNet / reference-metadata folder"
            + (" (comma-separated for several)" if several else "")
        ),
    )
    p.add_argument("--split", default="val", help="split to read (default: %(default)s)")
    p.add_argument("--data-options", default=None, help="JSON options of the reader, e.g. '{\"val_per_class\": 4}'")
    p.add_argument("--image-size", type=int, default=224, help="squash size and score-map size (default: 224)")
    p.add_argument("--resize", choices=("pil", "cv2"), default="pil", help="bilinear resize of the images (default)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (for a quick look)")


def parse_data(text: str, folder_reader: str | None = None, reader: str | None = None) -> tuple[str, str | None]:
    """``--data`` -> ``(reader, folder)``, the folder ``None`` where the reader's default (``$WSOL_DATA/<folder>``)
    is meant. The one parser of ``--data``, for every command.

    ``NAME=PATH``: a registered reader and its folder. ``NAME``: a registered reader, its default folder. Anything
    else is a folder: read by ``folder_reader`` when the command names one (``wsol quickstart`` and
    ``wsol study`` read Tiny ImageNet), else by the reader its layout shows: ``wnids.txt`` is Tiny ImageNet,
    ``metadata/`` is reference metadata (``wsoleval``). ``reader`` (a deprecated option such as the study's
    ``--dataset NAME``) makes any text without ``=`` a folder read by it.

    Raises:
        ValueError: an unknown reader before ``=``, or a folder of unknown layout.
        FileNotFoundError: neither a registered reader nor a folder (without ``folder_reader``).
    """
    from pathlib import Path

    from wsol.data import list_readers

    readers = list_readers()
    if "=" in text:
        name, root = text.split("=", 1)
        if name not in readers:
            raise ValueError(f"unknown dataset reader {name!r} in --data; registered: {', '.join(readers)}")
        return name, root
    if reader is not None:
        return reader, text
    if text in readers:
        return text, None
    if folder_reader is not None:
        return folder_reader, text
    path = Path(text)
    if not path.is_dir():
        raise FileNotFoundError(f"--data {text!r} is neither a registered dataset name nor a folder")
    if (path / "wnids.txt").is_file():
        return "tiny_imagenet", text
    if (path / "metadata").is_dir():
        return "wsoleval", text
    raise ValueError(f"cannot tell the layout of {path}; pass NAME=PATH with NAME one of {', '.join(readers)}")


def parse_data_spec(text: str, split: str = "val", options: dict[str, Any] | None = None) -> Any:
    """:func:`parse_data` as the :class:`wsol.cams.runner.DataSpec` that ``wsol cams``, ``metadata`` and
    ``leaderboard`` read (with the split and the reader's options)."""
    from wsol.cams.runner import DataSpec

    reader, root = parse_data(text)
    return DataSpec(reader, root, split, tuple(sorted((options or {}).items())))


def parse_json_option(text: str | None, flag: str) -> dict:
    """A JSON object given on the command line, or ``{}``."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} must be a JSON object: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {text!r}")
    return value


def add_device_argument(p: argparse.ArgumentParser) -> None:
    """``--device``: the torch device that runs the model (``auto``: CUDA when available, else CPU)."""
    p.add_argument("--device", default="auto", help="torch device, e.g. cpu, cuda, cuda:1 (default: auto)")


def resolve_device(text: str | None) -> Any:
    """The ``torch.device`` of a ``--device`` value (``auto``/None: CUDA when available, else CPU).

    Raises:
        ValueError: naming ``--device`` for a malformed or unavailable device.
    """
    import torch

    if text in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError as err:
        raise ValueError(f"--device: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {text}: CUDA is not available on this machine")
    return device


class _Deprecated(argparse.Action):
    """An old spelling: prints one line naming the new one, then stores like it (or only warns)."""

    def __init__(self, option_strings: Sequence[str], dest: str, advice: str = "", store: Callable | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        self.advice, self.store = advice, store
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        print(f"{parser.prog}: note: {option_string} is deprecated; {self.advice}", file=sys.stderr)
        if self.store is not None:
            self.store(namespace, values)


def add_deprecated(
    p: argparse.ArgumentParser,
    old: str,
    new_dest: str | None,
    advice: str,
    takes_value: bool = False,
) -> None:
    """Keep accepting the old spelling ``old`` (hidden from ``--help``).

    Args:
        p: the command's parser.
        old: the old option string, e.g. ``"--skip-parity"``.
        new_dest: the namespace attribute the old option sets (None: accepted and ignored).
        advice: what to use instead, printed after "deprecated; ".
        takes_value: the old option takes a value (else it is a flag, stored as True).
    """

    def store(namespace: argparse.Namespace, values: Any) -> None:
        setattr(namespace, new_dest, values if takes_value else True)

    nargs = None if takes_value else 0
    p.add_argument(
        old,
        action=_Deprecated,
        dest=f"_deprecated_{old.lstrip('-').replace('-', '_')}",
        advice=advice,
        store=store if new_dest else None,
        nargs=nargs,
        default=argparse.SUPPRESS,
    )
