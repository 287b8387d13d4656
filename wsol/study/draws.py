"""Class draws of Tiny ImageNet-200 for the multi-draw study: seeded, disjoint, and never the dev classes.

One draw of 10 classes can be unusually easy for a class-agnostic cue (its objects large, central and salient),
so a method is measured over several draws. Draw ``i`` (1-based) takes ``classes`` classes with seed ``i`` from
the source's classes minus the dev draw's and minus every earlier draw's, so the draws are disjoint by
construction and each is reproducible from its index. Draw 1 is the held-out set the single-draw study was
first checked on (seed 1, the dev classes excluded). A draw holding a class that the source cannot serve (the
public Tiny ImageNet-200 copy lacks the training boxes of two classes) is skipped, its index left unused.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Draw", "draw_classes", "prepare_draws", "read_draws", "usable_classes", "write_draws"]

DEV = "dev"


@dataclass(frozen=True)
class Draw:
    """One class draw.

    Attributes:
        name: ``dev`` or ``h<i>`` (held out).
        seed: The draw's seed (None for the dev draw, which is given).
        wnids: Its classes, sorted.
        words: WordNet id -> a short human name (the first synonym of ``words.txt``).
        folder: Where its Tiny ImageNet-layout copy lives (outside the repository).
    """

    name: str
    seed: int | None
    wnids: tuple[str, ...]
    words: dict[str, str]
    folder: Path


def draw_classes(
    available: Sequence[str],
    dev: Sequence[str],
    n_draws: int,
    classes: int = 10,
    usable: Collection[str] | None = None,
) -> list[tuple[int, list[str]]]:
    """The first ``n_draws`` usable draws of ``classes`` classes from ``available`` minus ``dev``, with their index.

    Draw ``i`` (1, 2, ...) samples with :func:`numpy.random.default_rng` ``(i)`` from the sorted classes that
    neither the dev draw nor an earlier draw holds, exactly as :func:`wsol.data.prepare.subset_tiny_imagenet` draws
    with ``seed=i`` and that exclusion list, so a draw's folder can be recut from its index alone. A draw holding a
    class outside ``usable`` (e.g. one whose boxes the source lacks) is skipped, its classes still count as drawn,
    and drawing goes on, so the draws before and after it do not depend on which classes are usable.

    Returns:
        ``[(i, classes), ...]``, ``n_draws`` of them, in order.

    Raises:
        ValueError: too few classes left for the draws asked for, or a dev class missing from ``available``.
    """
    if n_draws < 1 or classes < 1:
        raise ValueError(f"n_draws and classes must be >= 1, got {n_draws} and {classes}")
    missing = sorted(set(dev) - set(available))
    if missing:
        raise ValueError(f"the dev classes {missing} are not among the source's classes")
    excluded = set(dev)
    draws: list[tuple[int, list[str]]] = []
    i = 0
    while len(draws) < n_draws:
        i += 1
        pool = sorted(w for w in set(available) if w not in excluded)
        if len(pool) < classes:
            raise ValueError(f"draw {i}: only {len(pool)} classes left outside the dev and earlier draws")
        chosen = sorted(np.random.default_rng(i).choice(pool, size=classes, replace=False).tolist())
        excluded |= set(chosen)
        if usable is None or set(chosen) <= set(usable):
            draws.append((i, chosen))
    return draws


def usable_classes(source: Path) -> list[str]:
    """The classes of a Tiny ImageNet folder whose training boxes exist (a public copy may lack a class's file)."""
    return [w for w in _wnids(source) if (source / "train" / w / f"{w}_boxes.txt").is_file()]


def _words(folder: Path, wnids: Sequence[str]) -> dict[str, str]:
    path = folder / "words.txt"
    names = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            wnid, _, text = line.partition("\t")
            if wnid in wnids:
                names[wnid] = text.split(",")[0].strip()
    return {w: names.get(w, w) for w in wnids}


def _wnids(folder: Path) -> list[str]:
    path = folder / "wnids.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: not a Tiny ImageNet folder")
    return [w for w in path.read_text(encoding="utf-8").split() if w.strip()]


def prepare_draws(source: Path | None, root: Path, dev_folder: Path, n_draws: int, classes: int = 10) -> list[Draw]:
    """The dev draw and ``n_draws`` usable held-out draws, cutting missing ones from ``source`` into ``root/h<i>``.

    With ``source`` (a full Tiny ImageNet-200 folder), the draws are :func:`draw_classes` over its classes, a class
    without training boxes being unusable; a folder that exists already must hold exactly its draw's classes (a
    folder cut with other settings is refused, never mixed in). Without ``source``, the first ``n_draws``
    folders ``root/h<i>`` (by index) are read as they are.

    Returns:
        ``[dev, h<i>, ...]``.
    """
    from wsol.data.prepare import subset_tiny_imagenet

    dev_wnids = sorted(_wnids(dev_folder))
    draws = [Draw(DEV, None, tuple(dev_wnids), _words(dev_folder, dev_wnids), dev_folder)]
    if source is not None:
        planned = draw_classes(_wnids(source), dev_wnids, n_draws, classes, usable_classes(source))
    else:
        found = sorted(
            (int(f.name[1:]), f) for f in root.glob("h*") if f.name[1:].isdigit() and (f / "wnids.txt").is_file()
        )
        if len(found) < n_draws:
            raise ValueError(
                f"{root} holds {len(found)} cut draws, {n_draws} asked for: pass --source, a full Tiny ImageNet-200 "
                "folder, to cut them"
            )
        planned = [(i, sorted(_wnids(folder))) for i, folder in found[:n_draws]]
    for i, wanted in planned:
        folder = root / f"h{i}"
        if not (folder / "wnids.txt").is_file():
            assert source is not None
            subset_tiny_imagenet(source, folder, wnids=wanted)
        have = sorted(_wnids(folder))
        if have != wanted:
            raise ValueError(
                f"{folder} holds classes {have}, but draw h{i} of this source is {wanted}: use another --draws-root"
            )
        draws.append(Draw(f"h{i}", i, tuple(have), _words(folder, have), folder))
    names = [set(d.wnids) for d in draws]
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            if names[a] & names[b]:
                raise ValueError(
                    f"draws {draws[a].name} and {draws[b].name} share classes {sorted(names[a] & names[b])}"
                )
    return draws


def write_draws(path: Path, draws: Sequence[Draw]) -> None:
    """Record the draws (names, seeds, classes with their words) beside the results: no machine path."""
    from wsol.atomic import write_text

    payload = {
        d.name: {"seed": d.seed, "classes": dict(zip(d.wnids, (d.words[w] for w in d.wnids), strict=True))}
        for d in draws
    }
    write_text(path, json.dumps(payload, indent=1))


def read_draws(path: Path) -> dict[str, dict[str, object]]:
    """The record :func:`write_draws` wrote (draw name -> seed and classes)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
