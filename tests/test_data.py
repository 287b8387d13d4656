import numpy as np
import pytest
import torch

from wsol.data import EvalTransform, Sample, SyntheticConfig, TrainTransform, WSOLDataModule, collate, read_dataset
from wsol.data.synthetic import generate


def _sample(w=40, h=30, box=(5, 6, 20, 25), mask=True):
    image = np.zeros((h, w, 3), np.uint8)
    m = np.zeros((h, w), np.uint8)
    m[box[1] : box[3] + 1, box[0] : box[2] + 1] = 2
    return Sample(
        image=image, labels=(1,), boxes=np.array([box], np.float32), image_id="x.png", mask=m if mask else None
    )


def test_synthetic_is_deterministic_and_boxes_are_tight():
    cfg = SyntheticConfig(num_classes=3, train_per_class=4, val_per_class=2, image_size=48, seed=3)
    a, b = generate(cfg), generate(cfg)
    for key in a:
        assert np.array_equal(a[key], b[key])
    assert a["images"].shape == (18, 48, 48, 3)
    for mask, (x0, y0, x1, y1) in zip(a["masks"], a["boxes"], strict=True):
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max(), ys.max()) == (x0, y0, x1, y1)
    other = generate(SyntheticConfig(num_classes=3, train_per_class=4, val_per_class=2, image_size=48, seed=4))
    assert not np.array_equal(a["images"], other["images"])


def test_synthetic_objects_are_not_centred():
    data = generate(SyntheticConfig(train_per_class=40, val_per_class=0))
    size = 64
    centres = (data["boxes"][:, :2] + data["boxes"][:, 2:]) / 2
    # Objects spread over the image: centres cover both halves on both axes, with a wide spread.
    assert centres.std(axis=0).min() > 0.15 * size
    assert ((centres < size / 2).mean(axis=0) > 0.3).all() and ((centres > size / 2).mean(axis=0) > 0.3).all()


def test_synthetic_cache_is_reused(tmp_path):
    ds1 = read_dataset("synthetic", tmp_path, "train", train_per_class=2, val_per_class=1)
    files = list((tmp_path / "synthetic").glob("*.npz"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    ds2 = read_dataset("synthetic", tmp_path, "val", train_per_class=2, val_per_class=1)
    assert files[0].stat().st_mtime_ns == stamp
    assert len(ds1) == 10 and len(ds2) == 5


def test_train_transform_flip_keeps_boxes_and_masks_aligned():
    sample = _sample()
    tf = TrainTransform(32, num_classes=3, scale=(1.0, 1.0))
    for _ in range(10):
        out = tf(sample)
        ys, xs = torch.nonzero(out["mask"] == 2, as_tuple=True)
        x0, y0, x1, y1 = out["boxes"][0].tolist()
        # The mask's extent and the transformed box agree to within a pixel of resampling.
        assert abs(xs.min().item() - x0) <= 1.5 and abs(xs.max().item() - x1) <= 1.5
        assert abs(ys.min().item() - y0) <= 1.5 and abs(ys.max().item() - y1) <= 1.5


def test_eval_transform_maps_boxes_with_the_protocol_truncation():
    sample = _sample(w=300, h=64, box=(75, 7, 299, 63), mask=False)
    out = EvalTransform(224, num_classes=3)(sample)
    # int(75 * 224 / 300) = 56 exactly (75 * (224 / 300) would truncate to 55), int(7 * 224 / 64) = 24.
    assert out["boxes"].tolist() == [[56.0, 24.0, 223.0, 220.0]]
    assert out["image"].shape == (3, 224, 224)
    assert out["label"].item() == 1 and out["target"].tolist() == [0.0, 1.0, 0.0]


def test_pil_and_cv2_resize_differ_but_both_work():
    rng = np.random.default_rng(0)
    s = Sample(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), (0,), np.zeros((0, 4)), "r")
    a = EvalTransform(224, 2, resize="pil")(s)["image"]
    b = EvalTransform(224, 2, resize="cv2")(s)["image"]
    assert a.shape == b.shape and not torch.equal(a, b)
    with pytest.raises(ValueError, match="resize"):
        EvalTransform(224, 2, resize="nearest")


def test_collate_keeps_variable_box_counts():
    tf = EvalTransform(32, num_classes=3)
    a = tf(_sample())
    b = tf(Sample(np.zeros((30, 40, 3), np.uint8), (2,), np.array([[0, 0, 3, 3], [5, 5, 9, 9]]), "y", None))
    batch = collate([a, b])
    assert batch["image"].shape == (2, 3, 32, 32)
    assert [len(x) for x in batch["boxes"]] == [1, 2]
    assert "mask" not in batch  # only one of the two has a mask
    assert batch["label"].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"boxes": np.array([[5, 5, 3, 8]])}, "inverted or outside"),
        ({"boxes": np.array([[0, 0, 40, 10]])}, "inverted or outside"),
        ({"boxes": np.array([[-1, 0, 4, 10]])}, "inverted or outside"),
        ({"image": np.zeros((30, 40), np.uint8)}, r"\(H, W, 3\)"),
        ({"labels": ()}, "at least one"),
        ({"mask": np.zeros((10, 10), np.uint8)}, "mask shape"),
    ],
)
def test_bad_samples_name_the_image(kwargs, match):
    args = {"image": np.zeros((30, 40, 3), np.uint8), "labels": (0,), "boxes": np.zeros((0, 4)), "image_id": "img_7"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match) as info:
        Sample(**args)
    assert "img_7" in str(info.value)


def test_missing_data_folder_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_dataset("tiny_imagenet", tmp_path / "nowhere", "train")
    monkeypatch.delenv("WSOL_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="WSOL_DATA"):
        read_dataset("tiny_imagenet", None, "train")
    with pytest.raises(KeyError, match="synthetic"):
        read_dataset("no_such_dataset", None, "train")


def test_tiny_imagenet_reader_broken_row(tmp_path):
    (tmp_path / "wnids.txt").write_text("n001\n")
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "val_annotations.txt").write_text("val_0.JPEG n001 1 2 3 4\nval_1.JPEG n002 1 2 3 4\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt:2: unknown class 'n002'"):
        read_dataset("tiny_imagenet", tmp_path, "val")


def test_datamodule_batches(tiny_datamodule):
    tiny_datamodule.setup("fit")
    assert tiny_datamodule.num_classes == 3
    batch = next(iter(tiny_datamodule.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32)
    assert batch["target"].sum(1).tolist() == [1.0] * 4
    val = next(iter(tiny_datamodule.val_dataloader()))
    assert set(val["mask"].unique().tolist()) <= {0, 1, 2, 3}


@pytest.mark.data
def test_tiny_imagenet_real_data(tiny_imagenet_root):
    train = read_dataset("tiny_imagenet", tiny_imagenet_root, "train", limit_per_class=3)
    val = read_dataset("tiny_imagenet", tiny_imagenet_root, "val")
    assert len(train) == 30 and len(val) == 500 and train.num_classes == 10
    for ds in (train, val):
        for i in range(0, len(ds), max(1, len(ds) // 25)):
            s = ds.load(i)
            w, h = s.size
            assert s.image.shape == (64, 64, 3)
            assert ((s.boxes[:, :2] >= 0) & (s.boxes[:, 2:] <= [w - 1, h - 1])).all()
    dm = WSOLDataModule(
        "tiny_imagenet", root=tiny_imagenet_root, image_size=64, batch_size=8, train_options={"limit_per_class": 2}
    )
    dm.setup("fit")
    assert next(iter(dm.val_dataloader()))["image"].shape == (8, 3, 64, 64)


def test_tiny_imagenet_reader_missing_image_names_the_row(tmp_path):
    (tmp_path / "wnids.txt").write_text("n001\n")
    (tmp_path / "val" / "images").mkdir(parents=True)
    (tmp_path / "val" / "val_annotations.txt").write_text("val_0.JPEG n001 1 2 3 4\n")
    with pytest.raises(FileNotFoundError, match=r"val_annotations.txt:1: image not found: .*val_0.JPEG"):
        read_dataset("tiny_imagenet", tmp_path, "val")


def test_train_augmentation_repeats_under_the_same_global_seed():
    sample = Sample(
        np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8), (0,), np.array([[5, 5, 30, 30]]), "s"
    )
    outs = []
    for _ in range(2):
        torch.manual_seed(123)  # what pl.seed_everything does for torch
        tf = TrainTransform(24, num_classes=2, scale=(0.3, 1.0))
        outs.append(torch.stack([tf(sample)["image"] for _ in range(4)]))
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(124)
    other = TrainTransform(24, num_classes=2, scale=(0.3, 1.0))
    assert not torch.equal(outs[0], torch.stack([other(sample)["image"] for _ in range(4)]))
