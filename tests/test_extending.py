"""docs/extending.md, run as written: its package is built in a temporary folder from the page's own files, and
every step runs as a subprocess, each plugin route (``--import``, ``WSOL_PLUGINS``, the ``wsol.plugins`` entry
point) carrying steps that need the plugin; every other route is absent meanwhile, so a step passes only through
its own. (A checkpoint read without its plugin: tests/test_bad_inputs.py and tests/test_plugins.py.)

The entry-point route installs the package the way ``pip install`` records it: a ``.dist-info`` folder whose
``entry_points.txt`` is made from the page's ``pyproject.toml`` (offline, and the shared environment is left as
it is).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"<!-- (file: (?P<path>\S+)|step) -->\n```\w*\n(?P<body>.*?)```", re.S)


def page_parts() -> tuple[dict[str, str], list[str]]:
    """The files the page writes (path -> text) and its commands, in order."""
    files: dict[str, str] = {}
    steps: list[str] = []
    for match in BLOCK.finditer(PAGE.read_text(encoding="utf-8")):
        if match["path"]:
            files[match["path"]] = match["body"]
        else:
            steps += [line for line in match["body"].splitlines() if line.strip()]
    return files, steps


def test_the_page_holds_the_package_and_every_step():
    files, steps = page_parts()
    assert set(files) == {
        "mywsol/__init__.py",
        "mywsol/backbone.py",
        "mywsol/method.py",
        "mywsol/rows.py",
        "pyproject.toml",
        "areacam.yaml",
        "load.py",
    }
    commands = [shlex.split(step)[0 if not step.startswith("WSOL_PLUGINS=") else 1] for step in steps]
    assert commands == ["wsol"] * 5 + ["python"]
    assert [shlex.split(s)[s.count("--import") * 2 + 1] for s in steps[:5]] == [
        "fit",
        "cams",
        "evaluate",
        "export",
        "study",
    ]


def _install(folder: Path) -> None:
    """Record the page's package as installed, with its entry points (what pip writes into a .dist-info)."""
    text = (folder / "pyproject.toml").read_text()
    name = re.search(r'^name = "(.+)"$', text, re.M)[1]
    version = re.search(r'^version = "(.+)"$', text, re.M)[1]
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    groups = re.findall(r'^\[project\.entry-points\."(.+)"\]\n((?:\S+ = ".+"\n)+)', text, re.M)
    assert groups, "the page's pyproject.toml declares no entry points"
    entries = "\n".join(f"[{group}]\n{body.replace(chr(34), '')}" for group, body in groups)
    (info / "entry_points.txt").write_text(entries)


def _run(step: str, folder: Path, route: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run one of the page's commands with its plugins delivered through ``route``: as written (``flag``: a
    ``wsol`` command's ``--import``, a ``python`` step's ``WSOL_PLUGINS=``), all in ``WSOL_PLUGINS`` (``env``), by
    the installed package's entry point alone (``entry point``), or not at all (``none``)."""
    argv = shlex.split(step)
    written: dict[str, str] = {}
    while "=" in argv[0] and argv[0].split("=")[0].isupper():
        key, _, value = argv.pop(0).partition("=")
        written[key] = value
    plugins = [argv[i + 1] for i, a in enumerate(argv) if a == "--import"]
    plugins += [m for m in written.get("WSOL_PLUGINS", "").split(",") if m]
    run_env = dict(env)
    if route == "flag":
        run_env |= written
    else:
        argv = [a for i, a in enumerate(argv) if a != "--import" and (i == 0 or argv[i - 1] != "--import")]
        if route == "env" and plugins:
            run_env["WSOL_PLUGINS"] = ",".join(plugins)
    installed = list(folder.glob("*.dist-info"))
    if route == "entry point" and not installed:
        _install(folder)
    if route != "entry point":  # uninstall: no route but the one named
        for info in installed:
            for item in info.iterdir():
                item.unlink()
            info.rmdir()
    exe = Path(sys.executable).parent
    argv[0] = str(exe / argv[0]) if (exe / argv[0]).exists() else argv[0]
    return subprocess.run(argv, cwd=folder, env=run_env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_tutorial_runs_through_every_plugin_route(tmp_path):
    files, steps = page_parts()
    folder = tmp_path / "mywsol"
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("WSOL_PLUGINS", "PYTHONPATH", "WSOL_DEBUG")}
    env |= {"PYTHONPATH": str(folder), "WSOL_CACHE": str(tmp_path / "cache")}
    fit, cams, evaluate, export, study, load = steps
    # Each route carries steps that need the plugin: the flag trains and runs the study row; the variable scores;
    # the installed entry point exports, and loads the checkpoint in Python (a registry's first use loads it).
    routes = [(fit, "flag"), (cams, "env"), (evaluate, "none"), (export, "entry point"), (study, "flag")]
    routes += [(load, "entry point")]
    outputs = {}
    for step, route in routes:
        result = _run(step, folder, route, env)
        assert result.returncode == 0, f"{route}: {step}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        outputs[step] = result.stdout
    metrics = json.loads((folder / "out/eval/metrics.json").read_text())
    assert 0.0 <= metrics["MaxBoxAccV2"]["value"] <= 100.0
    assert (folder / "out/onnx/model.onnx").stat().st_size > 0 and "pass" in outputs[export]
    run = json.loads((folder / "out/study/runs/all/areacam/default/seed0.json").read_text())
    assert run["config"]["method"] == "AreaCAM" and run["config"]["model"]["area_weight"] == 0.1
    assert outputs[load].split() == ["TinyNet", "(2,", "3)", "(2,", "3,", "4,", "4)"]
