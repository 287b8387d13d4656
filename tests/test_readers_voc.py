"""The PASCAL VOC 2012 reader and the SBD train_aug preparation."""

import numpy as np
import pytest
from dataset_fixtures import write_sbd, write_voc

from wsol.data import read_dataset
from wsol.data.prepare import prepare_voc
from wsol.data.voc import VOC_CLASSES, parse_voc_xml


def test_voc_round_trips_labels_boxes_and_masks(tmp_path):
    truth = write_voc(tmp_path / "VOC2012")
    ds = read_dataset("voc", tmp_path, "train")  # the VOCdevkit folder works too
    assert ds.class_names == VOC_CLASSES and ds.multilabel is True and len(ds) == 3
    for i in range(len(ds)):
        sample = ds.load(i)
        t = truth[sample.image_id]
        assert sample.labels == tuple(t["classes"])
        # XML boxes are 1-based; the reader's are 0-based, in file order.
        np.testing.assert_array_equal(sample.boxes, np.asarray(t["boxes"], np.float32))
        np.testing.assert_array_equal(sample.mask, t["mask"])
        assert sample.size == t["size"] and set(np.unique(sample.mask)) <= {0, 255, *(c + 1 for c in t["classes"])}


def test_voc_difficult_objects_can_be_left_out(tmp_path):
    truth = write_voc(tmp_path / "VOC2012")
    first = "2008_000000"
    full = read_dataset("voc", tmp_path / "VOC2012", "train")
    easy = read_dataset("voc", tmp_path / "VOC2012", "train", difficult=False)
    assert full.load(0).image_id == first and len(full.load(0).labels) == 2
    sample = easy.load(0)
    assert len(sample.labels) == 1 and sample.boxes.shape == (1, 4)
    assert sample.labels[0] in truth[first]["classes"]


def test_xml_parser_ignores_parts_and_keeps_line_numbers(tmp_path):
    write_voc(tmp_path / "VOC2012")
    ann = parse_voc_xml(tmp_path / "VOC2012" / "Annotations" / "2008_000001.xml")
    assert len(ann.objects) == 2 and all(o.name != "head" for o in ann.objects)
    assert [o.name_line for o in ann.objects] == [10, 24] and [o.box_line for o in ann.objects] == [12, 26]


@pytest.mark.parametrize(
    ("tag", "new", "message"),
    [
        ("name", "unicorn", r"2008_000001.xml:10: unknown class 'unicorn'"),
        ("xmax", "500", r"2008_000001.xml:12: box .* is inverted or outside the \d+x\d+ image"),
        ("ymin", "a", r"2008_000001.xml:14: expected a number, got 'a'"),
        ("annotation", None, r"2008_000001.xml:\d+: malformed XML"),
    ],
)
def test_broken_voc_annotations_name_file_and_line(tmp_path, tag, new, message):
    write_voc(tmp_path / "VOC2012")
    xml = tmp_path / "VOC2012" / "Annotations" / "2008_000001.xml"
    text = xml.read_text()
    if new is None:
        text = text.replace("</annotation>", "</annotatio>")
    else:  # the first occurrence is the first object's
        value = text.split(f"<{tag}>")[1].split(f"</{tag}>")[0]
        text = text.replace(f"<{tag}>{value}</{tag}>", f"<{tag}>{new}</{tag}>", 1)
    xml.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_dataset("voc", tmp_path / "VOC2012", "train")


def test_missing_voc_image_is_reported_at_its_split_line(tmp_path):
    write_voc(tmp_path / "VOC2012")
    (tmp_path / "VOC2012" / "JPEGImages" / "2008_000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"train.txt:3: '2008_000002' is listed but .* does not exist"):
        read_dataset("voc", tmp_path / "VOC2012", "train")


def test_prepare_voc_builds_train_aug_from_sbd(tmp_path):
    pytest.importorskip("scipy")
    truth = write_voc(tmp_path / "VOC2012")
    sbd = write_sbd(tmp_path / "SBD", truth)
    assert prepare_voc(tmp_path / "VOC2012", tmp_path / "SBD") == 5  # 3 VOC train + 2 SBD, VOC val excluded
    ds = read_dataset("voc", tmp_path / "VOC2012", "train", image_set="train_aug")
    ids = [ds.load(i).image_id for i in range(len(ds))]
    assert ids == sorted([i for i, t in truth.items() if t["split"] == "train"] + list(sbd))
    for i, image_id in enumerate(ids):
        sample = ds.load(i)
        if image_id in sbd:
            np.testing.assert_array_equal(sample.mask, sbd[image_id])
            assert sample.labels == (VOC_CLASSES.index("bird"),)
        else:
            np.testing.assert_array_equal(sample.mask, truth[image_id]["mask"])


def test_train_aug_lines_in_psa_format_are_accepted(tmp_path):
    write_voc(tmp_path / "VOC2012")
    seg = tmp_path / "VOC2012" / "ImageSets" / "SegmentationAug"
    seg.mkdir()
    (seg / "train_aug.txt").write_text("/JPEGImages/2008_000001.jpg /SegmentationClassAug/2008_000001.png\n")
    ds = read_dataset("voc", tmp_path / "VOC2012", "train_aug")
    assert len(ds) == 1 and ds.load(0).image_id == "2008_000001"


def test_voc_image_without_objects_is_an_error(tmp_path):
    write_voc(tmp_path / "VOC2012")
    xml = tmp_path / "VOC2012" / "Annotations" / "2008_000002.xml"
    xml.write_text(xml.read_text().split("  <object>")[0] + "</annotation>\n")
    with pytest.raises(ValueError, match=r"2008_000002.xml: no <object>"):
        read_dataset("voc", tmp_path / "VOC2012", "train")
