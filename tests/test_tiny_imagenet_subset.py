import runpy
import sys

import numpy as np
import pytest
from dataset_fixtures import write_tiny_imagenet

from wsol.data import read_dataset
from wsol.data.prepare import subset_tiny_imagenet


def test_subset_keeps_only_the_drawn_classes_and_reads_back(tmp_path):
    write_tiny_imagenet(tmp_path / "full", per_class=2)
    (tmp_path / "full" / "words.txt").write_text("n00000001\tone\nn00000002\ttwo\nn00000003\tthree\n")
    chosen = subset_tiny_imagenet(tmp_path / "full", tmp_path / "sub", classes=2, seed=0, exclude=["n00000002"])
    assert chosen == ["n00000001", "n00000003"]  # the only two left after the exclusion
    assert (tmp_path / "sub" / "wnids.txt").read_text().split() == chosen
    assert (tmp_path / "sub" / "words.txt").read_text().splitlines() == ["n00000001\tone", "n00000003\tthree"]
    val = read_dataset("tiny_imagenet", tmp_path / "sub", "val")
    train = read_dataset("tiny_imagenet", tmp_path / "sub", "train")
    assert len(val) == 4 and len(train) == 4
    assert val.class_names == ("one", "three")
    full = read_dataset("tiny_imagenet", tmp_path / "full", "val")
    by_id = {s.image_id: s for s in map(full.load, range(len(full)))}
    for i in range(len(val)):
        sample = val.load(i)
        original = by_id[sample.image_id]
        assert full.class_names[original.labels[0]] == val.class_names[sample.labels[0]]
        np.testing.assert_array_equal(sample.boxes, original.boxes)
        np.testing.assert_array_equal(sample.image, original.image)


def test_subset_draw_is_reproducible_and_refuses_bad_requests(tmp_path):
    write_tiny_imagenet(tmp_path / "full", per_class=1)
    a = subset_tiny_imagenet(tmp_path / "full", tmp_path / "a", classes=1, seed=3)
    b = subset_tiny_imagenet(tmp_path / "full", tmp_path / "b", classes=1, seed=3)
    assert a == b
    with pytest.raises(ValueError, match="classes=3: .* has 2 classes"):
        subset_tiny_imagenet(tmp_path / "full", tmp_path / "c", classes=3, exclude=["n00000001"])
    with pytest.raises(FileExistsError, match="not empty"):
        subset_tiny_imagenet(tmp_path / "full", tmp_path / "a", classes=1)
    with pytest.raises(ValueError, match="does not list n09999999"):
        subset_tiny_imagenet(tmp_path / "full", tmp_path / "d", wnids=["n09999999"])


def test_subset_script_excludes_a_wnids_file(tmp_path, capsys, monkeypatch):
    write_tiny_imagenet(tmp_path / "full", per_class=1)
    (tmp_path / "seen.txt").write_text("n00000001\nn00000003\n")
    argv = ["subset", str(tmp_path / "full"), str(tmp_path / "sub"), "--classes", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--exclude-from", str(tmp_path / "seen.txt")])
    with pytest.raises(SystemExit) as done:
        runpy.run_path("datasets/subset_tiny_imagenet.py", run_name="__main__")
    assert done.value.code == 0
    assert "1 classes (n00000002)" in capsys.readouterr().out
