"""The COCO reader (pycocotools): multi-labels, box conversion, merged semantic masks, broken files."""

import json

import numpy as np
import pytest
from dataset_fixtures import write_coco

from wsol.data import read_dataset
from wsol.data.coco import coco_box_to_inclusive


def test_coco_fixture_round_trip(tmp_path):
    write_coco(tmp_path)
    ds = read_dataset("coco", tmp_path, "val")
    assert ds.class_names == ("person", "car", "dog") and ds.multilabel is True
    assert len(ds) == 3  # the image without annotations is skipped
    person_dog, car_crowd, dog = (ds.load(i) for i in range(3))
    assert person_dog.labels == (0, 2) and car_crowd.labels == (0, 1) and dog.labels == (2,)
    np.testing.assert_array_equal(person_dog.boxes, [[4, 4, 33, 33], [10, 10, 17, 17]])
    np.testing.assert_array_equal(car_crowd.boxes, [[20, 5, 47, 15]])  # crowd: label, no box
    np.testing.assert_array_equal(dog.boxes, [[0, 0, 47, 39]])
    # Instances are painted largest first: the small dog stays visible on the person.
    assert person_dog.mask[12, 12] == 3 and person_dog.mask[30, 30] == 1 and person_dog.mask[1, 1] == 0
    assert set(np.unique(person_dog.mask)) == {0, 1, 3}
    assert (car_crowd.mask[25:35, 0:20] == 255).all() and car_crowd.mask[10, 30] == 2
    assert person_dog.mask.shape == person_dog.image.shape[:2] == (40, 48)


@pytest.mark.parametrize(
    ("bbox", "expected"),
    [
        ([0, 0, 48, 40], (0, 0, 47, 39)),
        ([2.5, 3.0, 1.0, 0.0], (2, 3, 3, 3)),
        ([10, 10, 38.4, 30.5], (10, 10, 47, 39)),  # overshoot by round-off: clipped
        ([10, 10, 40, 10], None),  # ends 2 px past the border: an error
    ],
)
def test_coco_box_conversion(bbox, expected):
    assert coco_box_to_inclusive(bbox, 48, 40) == expected


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda d: d["annotations"][1].update(category_id=99), ValueError, r"annotation id 2 .*unknown category_id 99"),
        (
            lambda d: d["annotations"][0].update(bbox=[40, 4, 30, 30]),
            ValueError,
            r"annotation id 1 .*outside the 48x40",
        ),
        (lambda d: d["annotations"][0].pop("bbox"), ValueError, r"annotation id 1 .*'bbox' must be \[x, y, w, h\]"),
        (lambda d: d["images"][1].update(file_name="gone.jpg"), FileNotFoundError, r"image id 101: image not found"),
        (lambda d: d.pop("categories"), ValueError, r"instances_val2017.json: missing list 'categories'"),
    ],
)
def test_broken_coco_annotations_are_reported(tmp_path, edit, error, message):
    data = write_coco(tmp_path)
    edit(data)
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    with pytest.raises(error, match=message):
        read_dataset("coco", tmp_path, "val")


def test_malformed_coco_json_names_the_file(tmp_path):
    write_coco(tmp_path)
    (tmp_path / "annotations" / "instances_val2017.json").write_text('{"images": [\n{"id": 1,,}]}')
    with pytest.raises(ValueError, match=r"instances_val2017.json:2: malformed JSON"):
        read_dataset("coco", tmp_path, "val")
