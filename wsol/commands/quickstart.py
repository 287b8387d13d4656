"""``wsol quickstart``: train a ResNet-10 CAM on the demo data and show how well it localizes."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from wsol.atomic import write_text
from wsol.commands.arguments import parse_data
from wsol.training.recipes import QUICKSTART


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="train a ResNet-10 CAM on built-in data and evaluate its localization",
        description=(
            "Train a ResNet-10 CAM classifier on CPU, score its GT-class CAMs with MaxBoxAccV2 "
            "(reference protocol, interval 0.001) against a centred-Gaussian baseline, and write "
            "DIR/metrics.json and DIR/overlays.png."
        ),
    )
    p.add_argument("--out", default="runs/quickstart", help="output directory (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=QUICKSTART["epochs"], help="training epochs (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, weights and shuffling (default: %(default)s)")
    p.add_argument(
        "--data",
        default="synthetic",
        help="'synthetic' (generated demo set), NAME=PATH, or a Tiny ImageNet-layout folder (default: %(default)s)",
    )
    p.add_argument(
        "--train-per-class", type=int, default=300, help="demo training images per class (default: %(default)s)"
    )
    p.add_argument(
        "--val-per-class", type=int, default=50, help="demo validation images per class (default: %(default)s)"
    )
    p.add_argument("--batch-size", type=int, default=QUICKSTART["batch_size"], help="batch size (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="Lightning accelerator: cpu, cuda or auto (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train, score, draw and write: ``DIR/metrics.json`` and ``DIR/overlays.png``."""
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dm, model, checkpoint = _train(args, out)
    train_seconds = time.perf_counter() - start
    run_, centre_v2 = _score(model, dm)
    _draw(out / "overlays.png", run_, dm)
    result = run_.boxes.to_dict()
    metrics = {
        "top1_acc": run_.top1_acc,
        "MaxBoxAccV2": result["MaxBoxAccV2"],
        "MaxBoxAcc": result["MaxBoxAcc"],
        "Top1Loc": result.get("Top1Loc"),
        "center_baseline_MaxBoxAccV2": centre_v2,
        "cam_curve_interval": 0.001,
        "num_val_images": run_.num_images,
        "data": args.data,
        "epochs": args.epochs,
        "seed": args.seed,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "checkpoint": checkpoint,
    }
    write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    v2, c2 = result["MaxBoxAccV2"]["value"], centre_v2["value"]
    print(f"top-1 accuracy {run_.top1_acc:.1f}%  |  MaxBoxAccV2 {v2:.2f} (centre prior {c2:.2f})")
    print(f"wrote {out / 'metrics.json'} and {out / 'overlays.png'} in {metrics['total_seconds']:.0f} s")
    return 0


def _datamodule(args: argparse.Namespace) -> Any:
    """The demo's data: the generated set, or NAME=PATH / a Tiny ImageNet folder, at 64 px."""
    from wsol.data import WSOLDataModule

    name, root = parse_data(args.data, folder_reader="tiny_imagenet")  # NAME[=PATH], or a Tiny ImageNet folder
    if name == "synthetic" and root is None:
        options = {"train_per_class": args.train_per_class, "val_per_class": args.val_per_class, "seed": args.seed}
        return WSOLDataModule(
            "synthetic",
            image_size=64,
            batch_size=args.batch_size,
            train_options=options,
            val_options=options,
            train_scale=(0.6, 1.0),  # the demo's small objects: a crop keeps at least 60 % of the image
        )
    return WSOLDataModule(
        name, root=root, image_size=64, batch_size=args.batch_size, train_scale=tuple(QUICKSTART["train_scale"])
    )


def _train(args: argparse.Namespace, out: Path) -> tuple[Any, Any, str]:
    """The data module, the CAM trained on it for ``--epochs`` (validated once, at the end) and its checkpoint."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.loggers import CSVLogger

    from wsol.methods import CAM

    pl.seed_everything(args.seed, workers=True, verbose=False)
    dm = _datamodule(args)
    dm.setup("fit")
    model = CAM(num_classes=dm.num_classes, **QUICKSTART["model"])  # the one recipe source (wsol.training.recipes)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="gpu" if args.device.startswith("cuda") else args.device,
        default_root_dir=out,
        logger=CSVLogger(out, name="logs"),
        log_every_n_steps=10,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=args.epochs,  # validate once, at the end
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    callback = trainer.checkpoint_callback
    return dm, model, str(Path(callback.best_model_path or callback.last_model_path))


def _score(model: Any, dm: Any) -> tuple[Any, dict]:
    """The GT-class CAMs' localization run, and the centred-Gaussian prior's MaxBoxAccV2 on the same boxes."""
    import numpy as np

    from wsol.evaluation.localization import evaluate_localization
    from wsol.evaluation.priors import center_gaussian
    from wsol.metrics import BoxAccumulator

    run_ = evaluate_localization(model, dm.val_dataloader(), cam_curve_interval=0.001)
    size = dm.image_size
    centre = BoxAccumulator(cam_curve_interval=0.001)
    prior = center_gaussian(size, size)
    for batch in dm.val_dataloader():
        centre.update(np.repeat(prior[None], len(batch["boxes"]), 0), [b.numpy() for b in batch["boxes"]])
    return run_, centre.compute().to_dict()["MaxBoxAccV2"]


def _draw(path: Path, run_: Any, dm: Any) -> None:
    """The overlay grid of the run's examples with the boxes predicted at MaxBoxAcc's best threshold."""
    from wsol.metrics import boxes_from_scoremap
    from wsol.plots import denormalize, save_overlay_grid

    ex = run_.examples
    tau = run_.boxes.to_dict()["MaxBoxAcc"]["best_cam_threshold"]
    tau = tau[max(tau)] if isinstance(tau, dict) else tau
    preds = [boxes_from_scoremap(s, [tau], multi_contour=False)[0] for s in ex["scoremaps"]]
    names = dm.class_names
    captions = [
        f"{names[y]} -> {names[p]}" if y != p else names[y] for y, p in zip(ex["labels"], ex["preds"], strict=True)
    ]
    save_overlay_grid(
        path,
        denormalize(ex["images"], dm.mean, dm.std),
        ex["scoremaps"],
        ex["gt_boxes"],
        preds,
        captions,
        title=f"GT-class CAMs, GT boxes (green), predicted boxes at tau={tau:.3f} (red)",
    )
