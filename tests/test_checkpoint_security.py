"""Checkpoints are untrusted: a crafted pickle is refused by every loader and its payload never runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from wsol.methods.checkpoint import checkpoint_method, load_checkpoint, read_checkpoint


class _Payload:
    """Unpickling this object would create ``marker`` (what a malicious checkpoint would do with a shell)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


@pytest.fixture
def crafted(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"wsol_method": "wsol.methods.cam.CAM", "state_dict": {}, "boom": _Payload(marker)}, path)
    return path, marker


@pytest.mark.parametrize("loader", [read_checkpoint, checkpoint_method, load_checkpoint])
def test_crafted_checkpoint_is_refused_and_runs_nothing(crafted, loader):
    path, marker = crafted
    with pytest.raises(ValueError, match=rf"checkpoint {path} was refused: it holds objects other than tensors"):
        loader(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"PK\x03\x04 truncated", "cannot be read"), (b"not a checkpoint at all", "cannot be read")],
)
def test_broken_checkpoints_name_the_file(tmp_path, content, message):
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_truncated_real_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "real.ckpt"
    torch.save({"wsol_method": "wsol.methods.cam.CAM", "state_dict": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=f"checkpoint {path} cannot be read"):
        checkpoint_method(path)


def test_a_file_never_chooses_the_module_to_import(tmp_path):
    path = tmp_path / "elsewhere.ckpt"
    torch.save({"wsol_method": "os.system", "state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a registered training method .*: register its class"):
        load_checkpoint(path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ["cams", "--cam-method", "cam", "--data", "synthetic", "--out", "{out}", "--checkpoint", "{ckpt}"],
        ["export", "--out", "{out}", "--checkpoint", "{ckpt}"],
        ["pseudo-masks", "--data", "synthetic", "--out", "{out}", "--checkpoint", "{ckpt}"],
        ["leaderboard", "--cam-methods", "cam", "--data", "synthetic", "--out", "{out}", "--checkpoints", "{ckpt}"],
    ],
    ids=lambda c: c[0],
)
def test_every_command_refuses_a_crafted_checkpoint(crafted, tmp_path, capsys, command):
    from wsol.cli import main

    path, marker = crafted
    args = [a.format(out=tmp_path / "out", ckpt=path) for a in command]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"wsol {command[0]}: error: checkpoint {path} was refused") and "\n" not in err
    assert not marker.exists()
