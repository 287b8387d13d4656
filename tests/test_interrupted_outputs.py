"""Outputs that survive an interruption or a second command: a ``wsol predict`` killed over an earlier ``--out``
leaves nothing ``wsol evaluate`` would score; scoring a training run never rewrites its log or config; an export
killed during its parity check leaves the previous graph and sidecar together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from dataset_fixtures import write_tiny_imagenet

from wsol.cli import main


def _config(tmp_path: Path) -> list[str]:
    """A one-epoch CAM run on a Tiny ImageNet fixture with the default logger (the pinned version_0 folder)."""
    write_tiny_imagenet(tmp_path / "data", per_class=2)
    config = {
        "trainer": {"accelerator": "cpu", "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(tmp_path / "run"), "max_epochs": 2, "limit_train_batches": 2,
                    "log_every_n_steps": 1},
        "model": {"class_path": "wsol.methods.CAM", "init_args": {
            "backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 8}, "lr": 0.1}},
        "data": {"class_path": "wsol.data.WSOLDataModule", "init_args": {
            "dataset": "tiny_imagenet", "root": str(tmp_path / "data"), "image_size": 32, "batch_size": 2}},
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return ["--config", str(path)]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_scoring_a_run_leaves_its_log_and_config_alone_and_predict_over_an_earlier_out_is_refused(
    tmp_path, capsys, monkeypatch
):
    common = _config(tmp_path)
    assert main(["fit", *common]) == 0
    logs = tmp_path / "run" / "lightning_logs"
    before = _files(logs)
    assert "version_0/metrics.csv" in before and "version_0/config.yaml" in before
    assert len(before["version_0/metrics.csv"].decode().splitlines()) > 2
    # Default logger, as a user would run them: max_epochs differs so a rewritten config.yaml would show.
    scoring = [*common, "--ckpt_path", "last", "--trainer.max_epochs", "1"]
    assert main(["validate", *scoring]) == 0
    out = tmp_path / "predicted"
    assert main(["predict", *scoring, "--out", str(out)]) == 0
    assert _files(logs) == before
    assert not (tmp_path / "run" / "config.yaml").exists()
    assert json.loads((out / "cams.json").read_text())["status"] == "complete"

    evaluate = ["evaluate", "--metadata", str(out / "metadata"), "--scoremaps", str(out / "scoremaps"),
                "--no-progress", "--out", str(tmp_path / "scored")]  # fmt: skip
    assert main(evaluate) == 0
    capsys.readouterr()
    # A second predict into the same --out is refused, and touches nothing.
    maps_before = _files(out)
    assert main(["predict", *scoring, "--out", str(out)]) == 2
    assert "already holds the outputs of a run" in capsys.readouterr().err.strip().splitlines()[-1]
    assert _files(out) == maps_before

    # With --overwrite, killed after its first map: the earlier maps and metadata are gone, the manifest says
    # "running", and wsol evaluate refuses instead of scoring a mix of two runs.
    from wsol.evaluation.reference_output import ReferenceOutput

    real_save = ReferenceOutput.save_map

    def dies_after_one(self, image_id, scoremap):
        if any(self.scoremaps.rglob("*.npy")):
            raise KeyboardInterrupt  # as a kill: nothing after this line of the run happens
        return real_save(self, image_id, scoremap)

    monkeypatch.setattr(ReferenceOutput, "save_map", dies_after_one)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        main(["predict", *scoring, "--out", str(out), "--overwrite", "true"])
    monkeypatch.undo()
    assert json.loads((out / "cams.json").read_text())["status"] == "running"
    assert len(list((out / "scoremaps").rglob("*.npy"))) == 1 and not (out / "metadata").exists()
    capsys.readouterr()
    assert main(evaluate) == 2
    assert "did not finish; rerun it with --overwrite" in capsys.readouterr().err.strip().splitlines()[-1]


def test_export_killed_during_its_parity_check_leaves_the_previous_graph_and_its_sidecar(tmp_path, monkeypatch):
    import hashlib

    import wsol.onnx.export as export_module
    from wsol.onnx import build_backbone_model, export_onnx

    model, _ = build_backbone_model("resnet10", num_classes=3, backbone_kwargs={"width": 8}, seed=0)
    out = tmp_path / "model.onnx"
    export_onnx(model, out, image_size=(32, 32), parity=False)
    before = _files(tmp_path)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "check_parity", killed)
    other, _ = build_backbone_model("resnet10", num_classes=3, backbone_kwargs={"width": 8}, seed=1)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(other, out, image_size=(32, 32))
    assert _files(tmp_path) == before  # no new graph, no temporary file left behind
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_two_writers_of_one_study_reference_file_do_not_share_a_temporary_file(tmp_path, monkeypatch):
    """Two studies sharing --out may write the same reference npz at once: a second writer starting while the first
    is mid-write must not take (and rename away) the first one's temporary file."""
    import numpy as np
    import torch

    from wsol.study import scoring

    loader = [{"boxes": [torch.tensor([[1.0, 1.0, 4.0, 4.0]]), torch.tensor([[0.0, 0.0, 2.0, 2.0]])]}]
    real = np.savez_compressed
    nested: list[bool] = []

    def savez_while_another_writer_starts(file, **arrays):
        real(file, **arrays)
        if not nested:  # between this writer's temporary file and its rename, a second writer runs whole
            nested.append(True)
            scoring._write_npz(tmp_path / "center_gaussian_val.npz", np.zeros((8, 8)), loader)

    monkeypatch.setattr(np, "savez_compressed", savez_while_another_writer_starts)
    scoring._write_npz(tmp_path / "center_gaussian_val.npz", np.ones((8, 8)), loader)
    monkeypatch.undo()
    with np.load(tmp_path / "center_gaussian_val.npz") as data:
        assert data["cams"].shape == (2, 8, 8) and data["cams"].max() == 1.0  # the last rename wins, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["center_gaussian_val.npz"]
