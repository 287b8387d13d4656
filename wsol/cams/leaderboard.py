"""A CAM-quality leaderboard: methods x models x datasets under one protocol, with tables and pictures.

Every (model, dataset) pair is read once; each batch then goes through every method, so all methods
see the same images, and each method's maps are scored with the reference metrics
(:class:`wsol.metrics.BoxAccumulator`, :class:`wsol.metrics.MaskAccumulator` where masks exist).
Seconds per image time the method alone (forward, maps, protocol upsampling), not the scoring.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from wsol.atomic import atomic_write, write_text
from wsol.cams.models import CAMModel, load_cam_model
from wsol.cams.runner import DataSpec, dataset_class_map, protocol_loader, score_batch, write_json
from wsol.metrics import DEFAULT_PERCENTILE, get_normalization
from wsol.plots import plot_method_curves

COLUMNS = (
    "dataset", "model", "method", "MaxBoxAccV2", "IoU30", "IoU50", "IoU70", "MaxBoxAcc", "Top1Loc", "top1_acc",
    "PxAP", "seconds_per_image", "num_images",
)  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    """A model of the board: a checkpoint, or a backbone name (pretrained or with a random head)."""

    checkpoint: str | None = None
    backbone: str | None = None
    pretrained: bool = False
    backbone_kwargs: dict[str, Any] | None = field(default=None, hash=False)
    seed: int = 0

    def load(self, num_classes: int | None) -> CAMModel:
        return load_cam_model(
            self.checkpoint,
            self.backbone,
            self.pretrained,
            None if self.pretrained else num_classes,
            self.backbone_kwargs,
            self.seed,
        )


@dataclass
class Entry:
    """One (dataset, model, method) cell: its box results, mask results and timing."""

    dataset: str
    model: str
    method: str
    boxes: Any  # wsol.metrics.BoxResult
    masks: Any | None  # wsol.metrics.MaskResult
    top1_acc: float
    seconds_per_image: float

    def row(self) -> dict[str, Any]:
        v2 = self.boxes.modes["MaxBoxAccV2"]
        return {
            "dataset": self.dataset,
            "model": self.model,
            "method": self.method,
            "MaxBoxAccV2": v2.value,
            **{f"IoU{t}": v for t, v in v2.per_iou.items()},
            "MaxBoxAcc": self.boxes.modes["MaxBoxAcc"].value,
            "Top1Loc": v2.top1_value,
            "top1_acc": self.top1_acc,
            "PxAP": None if self.masks is None else self.masks.pxap,
            "seconds_per_image": self.seconds_per_image,
            "num_images": self.boxes.n_images,
        }


@dataclass
class Leaderboard:
    """The board's entries, its settings and the files written."""

    entries: list[Entry]
    config: dict[str, Any]
    files: list[Path] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows, per dataset best MaxBoxAccV2 first."""
        order = {d: i for i, d in enumerate(dict.fromkeys(e.dataset for e in self.entries))}
        rows = [e.row() for e in self.entries]
        return sorted(rows, key=lambda r: (order[r["dataset"]], -r["MaxBoxAccV2"]))

    def markdown_table(self) -> str:
        """The ranking as a Markdown table (values in percent, time in ms per image)."""
        head = "| # | dataset | model | method | MaxBoxAccV2 | IoU30 | IoU50 | IoU70 | MaxBoxAcc | Top-1 Loc | "
        head += "top-1 acc | PxAP | ms/img |"
        lines = [head, "|" + "---|" * 13]
        rank, last = 0, None
        for r in self.rows():
            rank = 1 if r["dataset"] != last else rank + 1
            last = r["dataset"]
            cells = [
                r[k] for k in ("MaxBoxAccV2", "IoU30", "IoU50", "IoU70", "MaxBoxAcc", "Top1Loc", "top1_acc", "PxAP")
            ]
            values = " | ".join("-" if v is None else f"{v:.2f}" for v in cells)
            ms = r["seconds_per_image"] * 1e3
            lines.append(f"| {rank} | {r['dataset']} | {r['model']} | {r['method']} | {values} | {ms:.1f} |")
        return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def run_leaderboard(
    methods: list[str],
    models: list[ModelSpec],
    datasets: list[DataSpec],
    out: str | Path,
    image_size: int = 224,
    resize: Literal["pil", "cv2"] = "pil",
    batch_size: int = 32,
    cam_curve_interval: float = 0.001,
    limit: int | None = None,
    num_classes: int | None = None,
    overlay_images: int = 6,
    progress: bool = True,
    normalization: str = "minmax",
    percentile: float = DEFAULT_PERCENTILE,
    device: str | torch.device = "cpu",
) -> Leaderboard:
    """Run, score and write the board into ``out`` (``leaderboard.md/.csv/.json`` and PNG pictures).

    Args:
        methods: registered CAM method names (see :func:`wsol.cams.list_cams`).
        models: the models; a backbone without pretrained weights gets a random head sized to the dataset.
        datasets: single-label datasets with boxes (masks add PxAP).
        out: output folder.
        image_size: squash size of the images and size of the score maps.
        resize: ``"pil"`` (the reference's torchvision ``Resize``) or ``"cv2"``.
        batch_size: images per batch.
        cam_curve_interval: Δ of the threshold grid (0.001 is the papers').
        limit: only the first N images of each dataset.
        num_classes: classes of random heads (default: the dataset's).
        overlay_images: images shown under every method in the overlay grid.
        progress: show progress bars.
        normalization: how every method's upsampled map becomes a score map: a rule of
            :data:`wsol.metrics.NORMALIZATIONS` (``"minmax"``, the reference protocol, by default).
        percentile: IVR's percentile in [0, 1).
        device: the torch device the models run on.

    Raises:
        KeyError: for an unknown CAM method.
        ValueError: for a bad normalisation or percentile.
    """
    from tqdm.auto import tqdm

    from wsol.cams import create_cam, list_cams
    from wsol.metrics import BoxAccumulator, MaskAccumulator

    rule = get_normalization(normalization, percentile)
    unknown = [m for m in methods if m not in list_cams()]
    if unknown:
        raise KeyError(f"unknown CAM method(s) {', '.join(unknown)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    board = Leaderboard([], {"methods": methods, "image_size": image_size, "resize": resize,
                             "cam_curve_interval": cam_curve_interval, "targets": "GT class (GT-known)",
                             "upsampling": f"bicubic float64, per-image {rule.label(percentile)}",
                             "normalization": rule.record(percentile)})  # fmt: skip
    pairs = [(d, m) for d in datasets for m in models]
    for spec, model_spec in tqdm(pairs, desc="models x datasets", disable=not progress or len(pairs) < 2):
        dataset = spec.open()
        model = model_spec.load(num_classes or dataset.num_classes)
        model.module.to(device)
        class_map = dataset_class_map(dataset, model)
        class_names = list(dataset.class_names)
        loader = protocol_loader(dataset, model, image_size, resize, batch_size, limit)
        extractors = {name: create_cam(name, model.module) for name in methods}
        boxes = {name: BoxAccumulator(cam_curve_interval) for name in methods}
        masks = {name: MaskAccumulator(cam_curve_interval) for name in methods}
        seconds = dict.fromkeys(methods, 0.0)
        correct = dict.fromkeys(methods, 0)
        shown: dict[str, list] = {"images": [], "boxes": [], "labels": [], **{name: [] for name in methods}}
        has_masks = True
        for batch in tqdm(loader, desc=f"{model.label} on {spec.label}", disable=not progress, leave=False):
            gt_boxes = [b.numpy() for b in batch["boxes"]]
            has_masks = has_masks and "mask" in batch
            room = overlay_images - len(shown["images"])
            for name in methods:
                scored = score_batch(
                    extractors[name], batch, class_map, image_size, normalization=normalization, percentile=percentile
                )
                seconds[name] += scored.seconds
                correct[name] += int(scored.correct.sum())
                boxes[name].update(scored.scoremaps, gt_boxes, scored.correct)
                if has_masks:
                    masks[name].update(scored.scoremaps, _binary_masks(batch["mask"].numpy(), batch["label"].numpy()))
                shown[name].extend(scored.scoremaps[: max(room, 0)])
            if room > 0:
                shown["images"].extend(batch["image"][:room].numpy())
                shown["boxes"].extend(gt_boxes[:room])
                shown["labels"].extend(batch["label"][:room].tolist())
        entries = []
        for name in methods:
            n = boxes[name].n_images
            result = boxes[name].compute()
            entries.append(Entry(spec.label, model.label, name, result, masks[name].compute() if has_masks else None,
                                 100.0 * correct[name] / n, seconds[name] / n))  # fmt: skip
        board.entries += entries
        stem = f"{_slug(model.label)}__{_slug(spec.label)}"
        curves = {e.method: e.boxes for e in entries}
        board.files.append(plot_method_curves(out / f"curves__{stem}.png", curves, f"{model.label} on {spec.label}"))
        board.files.append(_plot_overlays(out / f"overlays__{stem}.png", shown, entries, model, class_names))
    board.files[:0] = _write_tables(out, board)
    return board


def _binary_masks(label_maps: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Protocol masks from label maps: 1 where the GT class is, 255 ignore, 0 elsewhere."""
    binary = (label_maps == (labels[:, None, None] + 1)).astype(np.uint8)
    binary[label_maps == 255] = 255
    return binary


def _write_tables(out: Path, board: Leaderboard) -> list[Path]:
    rows = board.rows()
    csv_path = out / "leaderboard.csv"

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(csv_path, write_csv)
    cfg = board.config
    pictures = sorted(p.name for p in board.files)
    md = [
        "# CAM leaderboard",
        "",
        f"Protocol: images squashed to {cfg['image_size']}x{cfg['image_size']} ({cfg['resize']} bilinear), map of "
        f"the {cfg['targets']}, {cfg['upsampling']}; thresholds every {cfg['cam_curve_interval']} "
        "(clovaai/wsolevaluation semantics). MaxBoxAccV2 = mean over IoU 30/50/70 of the best BoxAcc(tau) with "
        "all contours; MaxBoxAcc = IoU 50, largest contour; Top-1 Loc (wsol extension) counts an image only "
        "when its top-1 class is right (V2 mean); PxAP only where masks exist. Values in percent; ms/img is "
        "the method's own time (forward, maps, upsampling) on this machine.",
        "",
        board.markdown_table(),
        "",
        "Pictures: " + ", ".join(f"[{p}]({p})" for p in pictures),
        "",
    ]
    md_path = out / "leaderboard.md"
    write_text(md_path, "\n".join(md))
    payload = {
        "config": cfg,
        "entries": [
            {**e.row(), "boxes": e.boxes.to_dict(), "masks": None if e.masks is None else e.masks.to_dict()}
            for e in board.entries
        ],
    }
    return [md_path, csv_path, write_json(out / "leaderboard.json", payload)]


def _plot_overlays(path: Path, shown: dict[str, list], entries: list[Entry], model: CAMModel, names: list) -> Path:
    """The same images (rows) under every method (columns), with GT boxes and each method's IoU-50 box."""
    from wsol.metrics import boxes_from_scoremap
    from wsol.plots import denormalize, save_overlay_grid

    images = denormalize(np.stack(shown["images"]), model.mean, model.std)
    cells: dict[str, list] = {"images": [], "maps": [], "gt": [], "pred": [], "captions": []}
    for i, image in enumerate(images):
        for e in entries:
            scoremap = shown[e.method][i]
            tau = e.boxes.modes["MaxBoxAcc"].best_cam_threshold[50]
            cells["images"].append(image)
            cells["maps"].append(scoremap)
            cells["gt"].append(shown["boxes"][i])
            cells["pred"].append(boxes_from_scoremap(scoremap, [tau], multi_contour=False)[0])
            cells["captions"].append(f"{e.method}: {names[shown['labels'][i]]}"[:40])
    return save_overlay_grid(
        path,
        np.stack(cells["images"]),
        np.stack(cells["maps"]),
        cells["gt"],
        cells["pred"],
        cells["captions"],
        ncols=len(entries),
        title=f"{model.label}: GT boxes (green), largest-contour box at each method's best tau for IoU 50 (red)",
    )
