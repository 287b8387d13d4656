"""The package's layout: rooms (subpackages and the few loose modules) import only from rooms below them.

``ROOMS`` is the order, lowest first, stated once, here. Every ``import`` of
a ``wsol`` module counts, the lazy ones inside functions and those under ``TYPE_CHECKING`` too; an old module
path kept for compatibility (``wsol._MOVED``) counts as the room it now lives in. ``wsol/__init__.py`` is the
facade over everything and is not a room.
"""

from __future__ import annotations

import ast
from pathlib import Path

import wsol

PACKAGE = Path(wsol.__file__).resolve().parent

ROOMS = [
    "plugins.py",  # loading plug-in modules
    "registry.py",  # the one registry idiom
    "atomic.py",  # atomic file writes
    "seeding.py",  # seeds and per-step generators
    "metrics",  # pure metric functions
    "models",  # backbones and plain networks
    "data",  # readers, transforms, the datamodule
    "augment",  # mixers
    "plots.py",  # curves and overlays
    "saliency",  # label-free cues
    "methods",  # training methods (LightningModules)
    "onnx",  # export
    "wsss",  # pseudo-masks
    "evaluation",  # file sources, the reference-layout writer, `wsol evaluate`
    "cams",  # post-hoc CAM methods, their runner, the leaderboard
    "training",  # `wsol fit` around Lightning, recipes
    "ortbench",  # ONNX Runtime benchmark
    "study",  # the small-data study
    "commands",  # the command line's subcommands
    "cli.py",  # `wsol`'s entry point
]


def _room(module: str) -> str | None:
    """The room of a dotted ``wsol`` module name, or None for the package itself."""
    module = wsol._MOVED.get(module, module)
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return parts[1] if (PACKAGE / parts[1]).is_dir() else f"{parts[1]}.py"


def _imports(path: Path) -> set[str]:
    """Absolute ``wsol`` modules imported anywhere in ``path`` (``from wsol import x`` names ``wsol.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "wsol"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "wsol":
                found |= {f"wsol.{a.name}" for a in node.names}
            elif node.module.startswith("wsol."):
                found.add(node.module)
    return found


def _rooms_on_disk() -> set[str]:
    return {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} | {
        p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"
    }


def test_every_room_is_ordered_and_at_most_six_modules_are_loose():
    assert _rooms_on_disk() == set(ROOMS)
    loose = sorted(name for name in ROOMS if name.endswith(".py"))
    assert len(loose) <= 6, loose


def test_no_module_imports_from_a_higher_room():
    rank = {room: i for i, room in enumerate(ROOMS)}
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative == Path("__init__.py"):
            continue  # the facade
        here = relative.parts[0]
        for module in _imports(path):
            there = _room(module)
            if there is not None and rank[there] > rank[here]:
                upward.append(f"{relative.as_posix()} imports {module} ({there} is above {here})")
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    path = tmp_path / "x.py"
    path.write_text(
        "def f():\n    from wsol.training import train\n    import wsol.recipes\n    from wsol import plots\n"
    )
    assert _imports(path) == {"wsol.training", "wsol.recipes", "wsol.plots"}
    assert {_room(m) for m in _imports(path)} == {"training", "plots.py"}
