"""The generic image-folder reader with an optional CSV of boxes."""

import numpy as np
import pytest
from dataset_fixtures import CLASSES, write_folder

from wsol.data import read_dataset


def test_folder_round_trip_with_boxes(tmp_path):
    truth = write_folder(tmp_path)
    for split in ("train", "val"):
        ds = read_dataset("folder", tmp_path, split)
        assert ds.class_names == tuple(sorted(CLASSES)) and len(ds) == 6
        for i in range(len(ds)):
            sample = ds.load(i)
            t = truth[f"{split}/{sample.image_id}"]
            assert sample.labels == (ds.class_names.index(CLASSES[t["label"]]),)
            np.testing.assert_array_equal(sample.boxes, np.asarray(t["boxes"], np.float32))


def test_classes_txt_fixes_the_index_and_missing_csv_means_no_boxes(tmp_path):
    write_folder(tmp_path, splits=("val",))
    (tmp_path / "classes.txt").write_text("dog\ncat\nbird\nfish\n")
    (tmp_path / "val" / "boxes.csv").unlink()
    ds = read_dataset("folder", tmp_path, "val")
    assert ds.class_names == ("dog", "cat", "bird", "fish")
    sample = ds.load(0)  # bird/0.png comes first in sorted order
    assert sample.image_id == "bird/0.png" and sample.labels == (2,) and sample.boxes.shape == (0, 4)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("cat/0.png,1,2,3", r"boxes.csv:11: expected 'path,x0,y0,x1,y1'"),
        ("cat/9.png,1,2,3,4", r"boxes.csv:11: 'cat/9.png' is not an image of"),
        ("cat/0.png,1,2,x,4", r"boxes.csv:11: box coordinates must be numbers"),
        ("cat/0.png,1,2,40,4", r"boxes.csv:11: box \[1.0, 2.0, 40.0, 4.0\] is inverted or outside the 40x32 image"),
    ],
)
def test_broken_box_rows_name_file_and_line(tmp_path, line, message):
    write_folder(tmp_path, splits=("train",))
    csv = tmp_path / "train" / "boxes.csv"
    csv.write_text(csv.read_text() + line + "\n")
    with pytest.raises(ValueError, match=message):
        read_dataset("folder", tmp_path, "train")


def test_unknown_class_folder_is_reported(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "val" / "horse").mkdir()
    with pytest.raises(ValueError, match=r"val/horse: unknown class 'horse'"):
        read_dataset("folder", tmp_path, "val")
