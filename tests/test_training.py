import pytest
import torch
from pytorch_lightning.callbacks import EMAWeightAveraging, ModelCheckpoint
from quiet import quiet_trainer

from wsol.methods import CAM


def _model(**kw):
    return CAM(backbone="resnet10", backbone_kwargs={"stem_stride": 2, "width": 16}, num_classes=3, **kw)


def _trainer(tmp_path, **kw):
    return quiet_trainer(**{"enable_checkpointing": True, "default_root_dir": tmp_path, **kw})


def test_fast_dev_run_on_demo_data(tiny_datamodule, tmp_path):
    model = _model(label_smoothing=0.1, l1=1e-6, l2=1e-5, warmup_epochs=0.5)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _trainer(tmp_path, fast_dev_run=True)
    trainer.fit(model, datamodule=tiny_datamodule)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    assert 0.0 <= metrics["val/top1_acc"] <= 100.0
    assert 0.0 <= metrics["val/MaxBoxAccV2"] <= 100.0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_optimizers_and_schedules(tiny_datamodule, tmp_path, optimizer):
    model = _model(optimizer=optimizer, lr_schedule="constant", lr=1e-3)
    trainer = _trainer(tmp_path, fast_dev_run=True)
    trainer.fit(model, datamodule=tiny_datamodule)
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(1e-3 * 4 / 256)  # linear scaling with the datamodule's batch of 4


def test_ema_callback_trains(tiny_datamodule, tmp_path):
    model = _model()
    trainer = _trainer(
        tmp_path,
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        callbacks=[EMAWeightAveraging(decay=0.9)],
        enable_checkpointing=False,
    )
    trainer.fit(model, datamodule=tiny_datamodule)
    assert torch.isfinite(trainer.callback_metrics["val/loss"])


def test_checkpoint_resumes_where_it_stopped(tiny_datamodule, tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = _trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1, callbacks=[ckpt])
    first.fit(_model(), datamodule=tiny_datamodule)
    assert first.global_step == 2
    second = _trainer(
        tmp_path,
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)],
    )
    second.fit(_model(), datamodule=tiny_datamodule, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert second.global_step == 4  # continued, not restarted
    restored = CAM.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert restored.hparams.num_classes == 3 and restored.hparams.backbone == "resnet10"


def test_load_checkpoint_rebuilds_the_method_class(tiny_datamodule, tmp_path):
    from wsol.methods import SEAM, checkpoint_method, load_checkpoint

    trainer = _trainer(
        tmp_path,
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=0,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "c", save_last=True)],
    )
    model = SEAM(backbone="resnet10", backbone_kwargs={"stem_stride": 2, "width": 16}, num_classes=3)
    trainer.fit(model, datamodule=tiny_datamodule)
    path = tmp_path / "c" / "last.ckpt"
    assert checkpoint_method(path) == "wsol.methods.seam.SEAM"
    restored = load_checkpoint(path)
    assert type(restored) is SEAM and not restored.training
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(restored(x), model(x), atol=1e-5)


def test_load_checkpoint_rejects_foreign_files(tmp_path):
    from wsol.methods import load_checkpoint

    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not written by a wsol method"):
        load_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        load_checkpoint(tmp_path / "nope.ckpt")


def _hand_scored(model, loader, normalization: str, percentile: float) -> float:
    """MaxBoxAccV2 of the GT-class CAMs scored outside the module: cv2 bicubic path, numpy accumulator."""
    from wsol.metrics import BoxAccumulator, prepare_scoremaps_numpy

    acc = BoxAccumulator(0.01)
    model.eval()
    with torch.no_grad():
        for batch in loader:
            logits, maps = model.forward_with_cams(batch["image"])
            gt_maps = maps[torch.arange(len(maps)), batch["label"]].numpy()
            scoremaps = prepare_scoremaps_numpy(gt_maps, tuple(batch["image"].shape[-2:]), normalization, percentile)
            acc.update(scoremaps, [b.numpy() for b in batch["boxes"]], (logits.argmax(1) == batch["label"]).numpy())
    return acc.compute().modes["MaxBoxAccV2"].value


def test_validation_metric_and_evaluate_localization_follow_the_normalization(tiny_datamodule, tmp_path):
    from wsol.evaluation.localization import evaluate_localization

    torch.manual_seed(0)
    model = _model(normalization="ivr", percentile=0.3)
    assert model.hparams.normalization == "ivr" and model.hparams.percentile == 0.3
    trainer = _trainer(tmp_path, limit_val_batches=3)
    logged = trainer.validate(model, datamodule=tiny_datamodule, verbose=False)[0]["val/MaxBoxAccV2"]
    loader = tiny_datamodule.val_dataloader()
    batches = [batch for _, batch in zip(range(3), loader, strict=False)]
    by_hand = _hand_scored(model, batches, "ivr", 0.3)
    assert logged == pytest.approx(by_hand, abs=1e-9)
    assert by_hand != pytest.approx(_hand_scored(model, batches, "minmax", 0.6), abs=1e-6)  # the option matters here
    run = evaluate_localization(model, batches, cam_curve_interval=0.01, progress=False, normalization="ivr",
                                percentile=0.3)  # fmt: skip
    assert run.boxes.modes["MaxBoxAccV2"].value == pytest.approx(by_hand, abs=1e-9)
    assert run.examples["scoremaps"].min() == 0 and run.examples["scoremaps"].max() == 1


def test_bad_normalization_arguments():
    with pytest.raises(ValueError, match="normalization must be one of minmax, max, pas, ivr, got 'softmax'"):
        _model(normalization="softmax")
    with pytest.raises(ValueError, match=r"percentile must lie in \[0, 1\), got 1.0"):
        _model(normalization="ivr", percentile=1.0)
    from wsol.evaluation.localization import evaluate_localization

    with pytest.raises(ValueError, match="percentile"):
        evaluate_localization(_model(), [], percentile=-0.5, progress=False)
