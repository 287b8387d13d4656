"""Reference-metadata parsers, the cub/imagenet/openimages readers and the archive preparation."""

import numpy as np
import pytest
from dataset_fixtures import CLASSES, image_with_box, write_cub_official, write_wsoleval
from PIL import Image

from wsol.data import read_dataset
from wsol.data import wsoleval_metadata as md
from wsol.data.prepare import prepare_cub, prepare_imagenet, prepare_openimages


def test_parsers_read_back_what_was_written(tmp_path):
    records = [
        md.MetadataRecord("a/1.jpg", 2, (50, 40), [(1, 2, 30, 39), (0, 0, 49, 0)]),
        md.MetadataRecord("b/2.jpg", 0, (10, 20), [(2.5, 3.25, 9, 19)]),
    ]
    folder = md.write_metadata(tmp_path / "test", records, ["x", "y", "z"])
    assert md.read_image_ids(folder / "image_ids.txt") == ["a/1.jpg", "b/2.jpg"]
    assert md.read_class_labels(folder / "class_labels.txt", 3) == {"a/1.jpg": 2, "b/2.jpg": 0}
    sizes = md.read_image_sizes(folder / "image_sizes.txt")
    assert sizes == {"a/1.jpg": (50, 40), "b/2.jpg": (10, 20)}
    boxes = md.read_localization(folder / "localization.txt", sizes)
    assert boxes == {"a/1.jpg": [(1, 2, 30, 39), (0, 0, 49, 0)], "b/2.jpg": [(2.5, 3.25, 9, 19)]}
    assert (folder / "localization.txt").read_text().splitlines()[0] == "a/1.jpg,1,2,30,39"
    assert md.read_class_names(tmp_path / "class_names.txt") == ("x", "y", "z")


def test_mask_paths_follow_the_reference_format(tmp_path):
    path = tmp_path / "localization.txt"
    path.write_text("i1.jpg,m/i1_a.png,ig/i1.png\ni1.jpg,m/i1_b.png,\ni2.jpg,m/i2_a.png,\n")
    masks, ignores = md.read_mask_paths(path)
    assert masks == {"i1.jpg": ["m/i1_a.png", "m/i1_b.png"], "i2.jpg": ["m/i2_a.png"]}
    assert ignores == {"i1.jpg": "ig/i1.png", "i2.jpg": ""}
    path.write_text("i1.jpg,m/i1_a.png,ig/i1.png\ni1.jpg,m/i1_b.png,ig/again.png\n")
    with pytest.raises(ValueError, match=r"localization.txt:2: ignore mask of 'i1.jpg' given again"):
        md.read_mask_paths(path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("class_labels.txt", "a.jpg,1\nb.jpg,x\n", r"class_labels.txt:2: expected a number, got 'x'"),
        ("class_labels.txt", "a.jpg,1\n\nb.jpg,7\n", r"class_labels.txt:3: unknown class 7"),
        ("class_labels.txt", "a.jpg,1,2\n", r"class_labels.txt:1: expected 2 comma-separated fields, got 3"),
        ("image_sizes.txt", "a.jpg,10,0\n", r"image_sizes.txt:1: image size must be positive"),
        ("image_ids.txt", "a.jpg\nb.jpg\na.jpg\n", r"image_ids.txt:3: duplicate image id 'a.jpg' \(first on line 1\)"),
        ("localization.txt", "a.jpg,5,5,4,9\n", r"localization.txt:1: box \[5.0, 5.0, 4.0, 9.0\] is inverted"),
        ("localization.txt", "a.jpg,0,0,9,9\na.jpg,0,0,10,9\n", r"localization.txt:2: box .* outside the 10x10 image"),
    ],
)
def test_broken_metadata_names_file_and_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    read = {
        "class_labels.txt": lambda p: md.read_class_labels(p, num_classes=3),
        "image_sizes.txt": md.read_image_sizes,
        "image_ids.txt": md.read_image_ids,
        "localization.txt": lambda p: md.read_localization(p, {"a.jpg": (10, 10)}),
    }[name]
    with pytest.raises(ValueError, match=message):
        read(path)


def test_cub_reader_round_trips_boxes_labels_and_pixels(tmp_path):
    truth = write_wsoleval(tmp_path, splits=("train", "test"))
    ds = read_dataset("cub", tmp_path, "test")
    assert ds.class_names == CLASSES and ds.multilabel is False and len(ds) == 6
    for i, record in enumerate(truth["test"]):
        sample = ds.load(i)
        assert sample.image_id == record.image_id and sample.labels == (record.label,)
        assert sample.size == record.size
        np.testing.assert_array_equal(sample.boxes, np.asarray(record.boxes, np.float32))
        np.testing.assert_array_equal(sample.image, np.asarray(Image.open(tmp_path / record.image_id)))
        assert sample.mask is None


def test_reference_metadata_without_class_names_uses_the_dataset_class_count(tmp_path):
    write_wsoleval(tmp_path, splits=("test",))
    (tmp_path / "metadata" / "class_names.txt").unlink()
    assert read_dataset("cub", tmp_path, "test").num_classes == 200
    assert read_dataset("imagenet", tmp_path, "test").num_classes == 1000
    with pytest.raises(ValueError, match="pass num_classes"):
        read_dataset("wsoleval", tmp_path, "test")
    with pytest.raises(ValueError, match=r"class_labels.txt:\d+: unknown class 2"):
        read_dataset("wsoleval", tmp_path, "test", num_classes=2)


def test_openimages_masks_union_instances_and_mark_ignore(tmp_path):
    truth = write_wsoleval(tmp_path, splits=("test",), masks=True)
    ds = read_dataset("openimages", tmp_path, "test")
    assert ds.num_classes == 3
    for i, record in enumerate(truth["test"]):
        sample = ds.load(i)
        width, height = record.size
        expected = np.zeros((height, width), np.uint8)
        expected[:2] = 255
        x0, y0, x1, y1 = _box_of(tmp_path / record.masks[0], record.size)
        expected[y0 : y1 + 1, x0 : x1 + 1] = record.label + 1
        expected[height - 3 :, width - 3 :] = record.label + 1
        np.testing.assert_array_equal(sample.mask, expected)
        np.testing.assert_array_equal(sample.boxes, [[x0, y0, x1, y1], [width - 3, height - 3, width - 1, height - 1]])


def _box_of(path, size):
    arr = np.asarray(Image.open(path).resize(size, Image.NEAREST))
    ys, xs = np.nonzero(arr)
    return xs.min(), ys.min(), xs.max(), ys.max()


def _corrupt(root, split, name, old, new):
    path = root / "metadata" / split / name
    path.write_text(path.read_text().replace(old, new, 1))
    return path


def test_missing_image_is_reported_at_its_line(tmp_path):
    truth = write_wsoleval(tmp_path, splits=("test",))
    (tmp_path / truth["test"][3].image_id).unlink()
    with pytest.raises(FileNotFoundError, match=r"image_ids.txt:4: image not found: .*dog_1.png"):
        read_dataset("cub", tmp_path, "test")
    ds = read_dataset("cub", tmp_path, "test", check_images=False)  # lazily: the same message on load
    with pytest.raises(FileNotFoundError, match=r"image_ids.txt:4: image not found"):
        ds.load(3)


def test_unknown_class_box_outside_and_wrong_size_are_reported(tmp_path):
    truth = write_wsoleval(tmp_path, splits=("test",))
    rec = truth["test"][1]
    _corrupt(tmp_path, "test", "class_labels.txt", f"{rec.image_id},{rec.label}", f"{rec.image_id},5")
    with pytest.raises(ValueError, match=r"class_labels.txt:2: unknown class 5"):
        read_dataset("cub", tmp_path, "test")
    _corrupt(tmp_path, "test", "class_labels.txt", f"{rec.image_id},5", f"{rec.image_id},{rec.label}")
    x0, y0, x1, y1 = rec.boxes[0]
    width = rec.size[0]
    _corrupt(
        tmp_path, "test", "localization.txt", f"{rec.image_id},{x0},{y0},{x1},", f"{rec.image_id},{x0},{y0},{width},"
    )
    with pytest.raises(ValueError, match=rf"localization.txt:2: box .* outside the {width}x{rec.size[1]} image"):
        read_dataset("cub", tmp_path, "test")
    _corrupt(
        tmp_path, "test", "localization.txt", f"{rec.image_id},{x0},{y0},{width},", f"{rec.image_id},{x0},{y0},{x1},"
    )
    _corrupt(tmp_path, "test", "image_sizes.txt", f"{rec.image_id},{width},", f"{rec.image_id},{width + 20},")
    ds = read_dataset("cub", tmp_path, "test")
    with pytest.raises(
        ValueError, match=rf"image_sizes.txt:2: .* is listed as {width + 20}x.* but the image is {width}x"
    ):
        ds.load(1)


def test_missing_mask_is_reported_at_its_line(tmp_path):
    truth = write_wsoleval(tmp_path, splits=("test",), masks=True)
    (tmp_path / truth["test"][2].masks[1]).unlink()
    with pytest.raises(FileNotFoundError, match=r"localization.txt:6: mask not found"):
        read_dataset("openimages", tmp_path, "test")


def test_prepare_cub_converts_the_official_files(tmp_path):
    truth = write_cub_official(tmp_path / "CUB_200_2011")
    counts = prepare_cub(tmp_path / "CUB_200_2011", workers=2)
    assert counts == {"train": 6, "test": 3}
    for split in ("train", "test"):
        ds = read_dataset("cub", tmp_path / "CUB_200_2011" / "images", split)
        assert ds.class_names == ("001.Cat", "002.Dog", "003.Bird")
        for i in range(len(ds)):
            sample = ds.load(i)
            label, true_split, box, size = truth[sample.image_id]
            assert (sample.labels, split, sample.size) == ((label,), true_split, size)
            np.testing.assert_array_equal(sample.boxes, [box])  # x + w - 1: the inclusive end


def test_prepare_imagenet_reads_folders_and_box_xmls(tmp_path):
    from dataset_fixtures import VOC_OBJECT, VOC_XML

    rng = np.random.default_rng(0)
    root, xml_dir = tmp_path / "ILSVRC", tmp_path / "val_xml"
    xml_dir.mkdir()
    truth = {}
    for label, wnid in enumerate(("n02", "n01")[::-1]):
        (root / "train" / wnid).mkdir(parents=True)
        Image.fromarray(image_with_box(rng, (40, 30), (1, 1, 5, 5))).save(root / "train" / wnid / f"{wnid}_1.JPEG")
        name = f"ILSVRC2012_val_{label:08d}"
        (root / "val").mkdir(exist_ok=True)
        Image.fromarray(image_with_box(rng, (40, 30), (1, 1, 5, 5))).save(root / "val" / f"{name}.JPEG")
        obj = VOC_OBJECT.format(name=wnid, difficult=0, x0=2, y0=3, x1=40, y1=29)  # xmax == W: clipped
        (xml_dir / f"{name}.xml").write_text(VOC_XML.format(image_id=name, width=40, height=30, objects=obj))
        truth[f"val/{name}.JPEG"] = label
    assert prepare_imagenet(root, xml_dir, workers=2) == {"train": 2, "test": 2}
    train = read_dataset("imagenet", root, "train")
    assert train.class_names == ("n01", "n02") and [s.labels for s in map(train.load, range(2))] == [(0,), (1,)]
    assert train.load(0).boxes.shape == (0, 4)
    test = read_dataset("imagenet", root, "test")
    for i in range(len(test)):
        sample = test.load(i)
        assert sample.labels == (truth[sample.image_id],)
        np.testing.assert_array_equal(sample.boxes, [[2, 3, 39, 29]])


def test_prepare_openimages_writes_mask_metadata(tmp_path):
    root = tmp_path / "OpenImages"
    (root / "test").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    rows = ["MaskPath,ImageID,LabelName,BoxID"]
    for image_id, mid in (("aa", "/m/01"), ("bb", "/m/02"), ("cc", "/m/09")):
        Image.fromarray(image_with_box(rng, (30, 20), (2, 2, 9, 9))).save(root / "test" / f"{image_id}.jpg")
        m = np.zeros((20, 30), np.uint8)
        m[2:10, 2:10] = 255
        Image.fromarray(m).save(root / "masks" / f"{image_id}_1.png")
        rows.append(f"{image_id}_1.png,{image_id},{mid},b1")
    rows.append("bb_1.png,bb,/m/01,b2")  # two classes in one image: left out
    (tmp_path / "seg.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "classes.txt").write_text("/m/01,Apple\n/m/02,Pear\n")
    assert prepare_openimages(root, "test", tmp_path / "seg.csv", tmp_path / "classes.txt", root / "masks") == 1
    ds = read_dataset("openimages", root, "test")
    assert ds.class_names == ("Apple", "Pear") and len(ds) == 1
    sample = ds.load(0)
    assert sample.image_id == "test/aa.jpg" and sample.labels == (0,)
    assert (sample.mask == 1).sum() == 64 and set(np.unique(sample.mask)) == {0, 1}


def _script(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "datasets" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_cub_script_is_a_thin_wrapper(tmp_path, capsys):
    write_cub_official(tmp_path / "CUB_200_2011")
    assert _script("prepare_cub").main([str(tmp_path / "CUB_200_2011"), "--out", str(tmp_path / "meta")]) == 0
    assert capsys.readouterr().out.strip() == "train: 6 images, test: 3 images"
    assert md.read_image_ids(tmp_path / "meta" / "test" / "image_ids.txt")[0] == "001.Cat/cat_2.jpg"
