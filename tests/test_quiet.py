import logging
import warnings

import pytorch_lightning as pl

import wsol.methods  # noqa: F401 - installs the filters


def test_no_advertising_tips_and_no_leafspec_warning(tiny_datamodule, tmp_path, caplog):
    from wsol.methods import CAM

    model = CAM(backbone="resnet10", backbone_kwargs={"stem_stride": 2, "width": 8}, num_classes=3)
    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        import wsol.training.quiet

        wsol.training.quiet.quiet_lightning()  # re-applied after simplefilter reset the warning filters
        trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, limit_val_batches=1,
                             default_root_dir=tmp_path, enable_progress_bar=False)  # fmt: skip
        trainer.fit(model, datamodule=tiny_datamodule)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "GPU available" in text  # other information still reaches the user
    assert "Tip" not in text
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
