"""The resumable pseudo-mask run: CAMs per image, label PNGs, COCO JSON, scores, sweep plot and grid.

Layout of the output folder::

    run.json               settings; a resumed run must use the same CAM settings
    cams/<id>.npz          normalised maps of the image's classes (float16) and their indices
    masks/<id>.png         indexed label PNGs (0 background, c + 1 class c, 255 ignore)
    pseudo_masks.json      the same masks as COCO RLE annotations
    metrics.json           mask scores against the dataset's GT masks (when it has them)
    bg_sweep.png           mIoU over background thresholds (with a sweep)
    grid.png               images, GT masks and pseudo-masks side by side

``<id>`` is the sample's ``image_id`` without its extension. Files are written atomically, and an image
whose files exist is not recomputed, so an interrupted run picks up where it stopped. Label maps are taken
from the stored float16 maps, so a resumed run and a fresh one give identical masks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from wsol.data.datasets import SampleDataset
from wsol.data.schema import IGNORE_INDEX, Sample
from wsol.models.contract import backbone_contract
from wsol.models.pcm import relu_minmax
from wsol.wsss.export import load_label_png, save_label_png, write_coco_json
from wsol.wsss.inference import (
    SEAM_BG_THRESHOLD,
    SEAM_SCALES,
    Refine,
    cam_function,
    multiscale_cams,
    present_classes,
    threshold_labels,
    top_class,
)
from wsol.wsss.scoring import MaskScorer
from wsol.wsss.store import atomic_write, check_settings, claim_masks, image_stem, load_npz, save_npz

__all__ = ["PseudoMaskConfig", "PseudoMaskRun", "generate_pseudo_masks"]


@dataclass(frozen=True)
class PseudoMaskConfig:
    """Settings of a pseudo-mask run (SEAM's defaults).

    Args:
        scales: input scales of the multi-scale passes.
        flip: add a flipped pass per scale.
        refine: ``"pcm"``, ``"none"`` or ``"auto"`` (PCM for a SEAM model), see :func:`cam_function`. The PCM's
            affinity is ``(hw)^2`` per pass, so large scales of large images need ``base_size`` or much memory.
        labels: ``"gt"`` keeps the image's GT classes (SEAM's train-set protocol); ``"pred"`` the predicted.
        class_threshold: sigmoid threshold of predicted classes for a multi-label model.
        base_size: resize each image so its longer side is this many pixels before scaling (None: as is).
        bg_threshold: constant background score of the label maps.
        sweep: background thresholds to score; the masks then use the best one (needs GT masks).
        ignore_threshold: lower background score; pixels between it and the background threshold become 255.
    """

    scales: tuple[float, ...] = SEAM_SCALES
    flip: bool = True
    refine: Refine = "auto"
    labels: Literal["gt", "pred"] = "gt"
    class_threshold: float = 0.5
    base_size: int | None = None
    bg_threshold: float = SEAM_BG_THRESHOLD
    sweep: tuple[float, ...] | None = None
    ignore_threshold: float | None = None

    def __post_init__(self) -> None:
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be positive and non-empty, got {self.scales}")
        if self.labels not in ("gt", "pred"):
            raise ValueError(f"labels must be 'gt' or 'pred', got {self.labels!r}")
        if self.base_size is not None and self.base_size < 1:
            raise ValueError(f"base_size must be >= 1, got {self.base_size}")
        if self.sweep is not None and len(self.sweep) == 0:
            raise ValueError("a sweep needs at least one threshold")
        if self.ignore_threshold is not None:
            # Checked up front: the masks are written after the maps, which may take hours.
            lowest = self.bg_threshold if self.sweep is None else min(self.sweep)
            if self.ignore_threshold >= lowest:
                raise ValueError(
                    f"ignore_threshold ({self.ignore_threshold}) must be below the background threshold"
                    f"{'' if self.sweep is None else ' (every swept one)'}, {lowest}"
                )

    def cam_settings(self) -> dict[str, Any]:
        """The settings that determine the stored maps (a resumed run must match them)."""
        keys = ("scales", "flip", "refine", "labels", "class_threshold", "base_size")
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k in keys}


@dataclass
class PseudoMaskRun:
    """What :func:`generate_pseudo_masks` did.

    Attributes:
        out_dir: the output folder.
        num_images: images in the dataset.
        computed: images whose maps were computed in this run.
        reused: images whose maps were already on disk.
        masks_written: label PNGs written in this run.
        bg_threshold: background threshold of the label PNGs.
        report: what ``metrics.json`` holds (None without GT masks): ``scores`` of the masks (mIoU in percent,
            per-class IoU, precision, recall, F1, FPR), ``all_background`` (the mIoU of predicting background
            everywhere), ``sweep`` and the settings.
        sweep: ``thresholds``, ``mIoU``, ``best_threshold`` and ``best_mIoU`` of a sweep, or None.
        files: paths of the JSON, metrics and pictures written.
        seconds: wall time.
    """

    out_dir: Path
    num_images: int
    computed: int
    reused: int
    masks_written: int
    bg_threshold: float
    report: dict[str, Any] | None
    sweep: dict[str, Any] | None
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def scores(self) -> dict[str, Any] | None:
        """Scores of the written masks, or None without GT masks."""
        return None if self.report is None else self.report["scores"]


def _to_input(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).to(device).permute(2, 0, 1).float().div_(255.0)
    return (x - torch.tensor(mean, device=device)[:, None, None]) / torch.tensor(std, device=device)[:, None, None]


def _compute_maps(
    model: nn.Module, cam_fn: Any, sample: Sample, config: PseudoMaskConfig, device: torch.device
) -> dict[str, np.ndarray]:
    height, width = sample.image.shape[:2]
    factor = 1.0 if config.base_size is None else config.base_size / max(height, width)
    contract = backbone_contract(model.backbone)
    x = _to_input(sample.image, contract.mean, contract.std, device)
    gt = sample.labels if config.labels == "gt" else None
    multilabel = bool(getattr(model, "multilabel", False))

    def select(logits: torch.Tensor) -> torch.Tensor:
        return present_classes(logits, gt, multilabel, config.class_threshold).nonzero().flatten()

    scales = [s * factor for s in config.scales]
    logits, maps = multiscale_cams(cam_fn, x, scales, config.flip, (height, width), select=select)
    classes = select(logits)
    norm = relu_minmax(maps)  # absent classes are zeroed in SEAM, i.e. never compete
    return {
        "maps": norm.half().cpu().numpy(),
        "classes": classes.cpu().numpy().astype(np.int16),
        "logits": logits.float().cpu().numpy(),
    }


def _ensure_mask(
    out_dir: Path, stem: str, stored: Callable[[], dict[str, np.ndarray]], bg: float, ignore: float | None
) -> tuple[np.ndarray, bool]:
    """The image's label PNG, written from its stored maps unless it exists; returns it and whether it was written."""
    path = out_dir / "masks" / f"{stem}.png"
    if path.is_file():
        return load_label_png(path), False
    maps = stored()
    # float64 scores compare with the thresholds exactly as the metrics' sweep does.
    best, label = top_class(torch.from_numpy(maps["maps"].astype(np.float64)), torch.from_numpy(maps["classes"]))
    labels = threshold_labels(best, label, bg, ignore).numpy()
    save_label_png(path, labels)
    return labels, True


@torch.no_grad()
def generate_pseudo_masks(
    model: nn.Module,
    dataset: SampleDataset,
    out_dir: str | Path,
    config: PseudoMaskConfig | None = None,
    source: dict[str, Any] | None = None,
    grid_images: int = 8,
    limit: int | None = None,
    progress: bool = True,
) -> PseudoMaskRun:
    """Run the pseudo-mask pipeline of a trained model over a dataset, resuming an interrupted run.

    Args:
        model: a trained network (:func:`wsol.load_model`; a SEAM network for PCM refinement) or training system.
        dataset: samples at their original size; their GT masks, when present, are used for scoring.
        out_dir: output folder (see the module docstring for its layout).
        config: the run's settings.
        source: what produced the maps (e.g. the checkpoint name), stored with the settings.
        grid_images: images in the visual check (0 for none).
        limit: only the first ``limit`` images.
        progress: show a progress bar.

    Raises:
        ValueError: if the model and dataset class counts differ, a sweep lacks GT masks, or ``out_dir``
            holds maps made with other settings.
    """
    from wsol.models.cam_net import as_network
    from wsol.plots import save_mask_grid, save_sweep_plot

    config = config or PseudoMaskConfig()
    start = time.perf_counter()
    out_dir = Path(out_dir)
    model = as_network(model)
    num_classes = model.num_classes
    if num_classes >= IGNORE_INDEX:
        raise ValueError(f"{num_classes} classes do not fit a uint8 label map with {IGNORE_INDEX} as ignore")
    if dataset.num_classes and dataset.num_classes != num_classes:
        raise ValueError(f"the model has {num_classes} classes and the dataset {dataset.num_classes}")
    names = list(dataset.class_names) or [str(c) for c in range(num_classes)]
    cam_fn = cam_function(model, config.refine)
    manifest = check_settings(out_dir, {**config.cam_settings(), **({"source": source} if source else {})})
    device = next(model.parameters()).device
    model.eval()
    scorer = MaskScorer(num_classes, names, config.sweep)
    ignore, fixed = config.ignore_threshold, config.sweep is None
    # PNGs of a fixed threshold are written in the first pass; a sweep's best is known only after it.
    if fixed:
        claim_masks(out_dir, manifest, {"bg_threshold": config.bg_threshold, "ignore_threshold": ignore})
    stems, grid, computed, written = [], [], 0, 0
    total = len(dataset) if limit is None else min(limit, len(dataset))
    for index in tqdm(range(total), desc="pseudo-masks", disable=not progress):
        sample = dataset.load(index)
        stem = image_stem(sample.image_id)
        stems.append(stem)
        cam_path, gt = out_dir / "cams" / f"{stem}.npz", sample.mask
        if cam_path.is_file():
            stored = load_npz(cam_path)
        else:
            stored = _compute_maps(model, cam_fn, sample, config, device)
            save_npz(cam_path, stored)
            computed += 1
        if gt is not None:
            scorer.update_gt(gt)
            scorer.update_sweep(stored, gt)
        if fixed:
            labels, new = _ensure_mask(out_dir, stem, lambda s=stored: s, config.bg_threshold, ignore)
            written += new
            if gt is not None:
                scorer.update_masks(labels, gt)
        if len(grid) < grid_images:
            grid.append((sample.image, gt, stem))
    if not fixed and not scorer.has_gt:
        raise ValueError("a background-threshold sweep needs GT masks, and the dataset has none")
    sweep = None if fixed else scorer.sweep_report()
    bg = config.bg_threshold if sweep is None else sweep["best_threshold"]
    if sweep is not None:
        claim_masks(out_dir, manifest, {"bg_threshold": bg, "ignore_threshold": ignore})
        if ignore is None:
            scorer.masks_from_sweep(bg)  # the written masks are the sweep's label maps at bg
        for index, stem in enumerate(stems):
            cam_path = out_dir / "cams" / f"{stem}.npz"
            labels, new = _ensure_mask(out_dir, stem, lambda p=cam_path: load_npz(p), bg, ignore)
            written += new
            gt = dataset.load(index).mask if ignore is not None else None  # the band changes the scores
            if gt is not None:
                scorer.update_masks(labels, gt)

    files: dict[str, Path] = {"json": out_dir / "pseudo_masks.json"}
    entries = ((f"{stem}.png", load_label_png(out_dir / "masks" / f"{stem}.png")) for stem in stems)
    write_coco_json(files["json"], entries, names, manifest)
    report = None
    if scorer.has_gt:
        report = {"bg_threshold": bg, **scorer.report(), "sweep": sweep, "settings": manifest}
        files["metrics"] = out_dir / "metrics.json"
        atomic_write(files["metrics"], lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
    if sweep is not None:
        files["sweep_plot"] = save_sweep_plot(out_dir / "bg_sweep.png", sweep)
    if grid:
        preds = [load_label_png(out_dir / "masks" / f"{stem}.png") for *_, stem in grid]
        images, gts, captions = zip(*grid, strict=True)
        files["grid"] = save_mask_grid(out_dir / "grid.png", images, gts, preds, captions=captions)
    return PseudoMaskRun(
        out_dir=out_dir,
        num_images=len(stems),
        computed=computed,
        reused=len(stems) - computed,
        masks_written=written,
        bg_threshold=bg,
        report=report,
        sweep=sweep,
        files=files,
        seconds=time.perf_counter() - start,
    )
