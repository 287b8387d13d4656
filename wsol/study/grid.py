"""The small-data grid: the CAM baseline recipe, one row per regularizer, and the combination rule.

A run's configuration is a plain JSON-able dict (method class, model keyword arguments, mixer, EMA,
epochs, batch size, crop scale), so it can be hashed, written next to its result and rebuilt exactly.
A row (:class:`MethodSpec`) is a set of overrides of the base recipe; a row with several variants
(e.g. two label-smoothing strengths) has its variant chosen on the tuning split, never on val.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wsol.study.rows import RecipeOverrides, check_row
from wsol.training.recipes import SMALL_DATA, merge

__all__ = [
    "BASE_CONFIG",
    "COMBO",
    "SMALL_DATA_METHODS",
    "MethodSpec",
    "RunSpec",
    "build_callbacks",
    "build_model",
    "combine",
    "config_hash",
    "merge",
]

# The plain CAM: the small-data recipe of wsol.training.recipes (ResNet-10 from scratch, 4x4 maps at 64 px, 12 epochs).
BASE_CONFIG: dict[str, Any] = SMALL_DATA

COMBO = "best_combo"


@dataclass(frozen=True)
class MethodSpec:
    """One row of the study, checked when it is made (:func:`wsol.study.rows.check_row`): a misspelt key of a
    variant's overrides fails here, naming the row, the variant and the key. Plugins add rows with
    :func:`wsol.study.rows.register_row`.

    Attributes:
        name: Row name in the tables.
        group: Factor group for the combination (one row per group at most); None: not combinable.
        variants: Variant name -> overrides of the base recipe (:class:`~wsol.study.rows.RecipeOverrides`); several
            are tuned on the tuning split.
        note: What the row changes, for the README and the table.
    """

    name: str
    group: str | None
    variants: dict[str, RecipeOverrides]
    note: str = ""

    def __post_init__(self) -> None:
        check_row(self)


def _mixer(name: str, **kwargs: Any) -> dict[str, Any]:
    return {"mixer": {"name": name, **kwargs}}


SMALL_DATA_METHODS: tuple[MethodSpec, ...] = (
    MethodSpec("cam", None, {"default": {}}, "plain CAM, 4x4 maps"),
    MethodSpec(
        "cam_hires", "maps", {"default": {"model": {"backbone_kwargs": {"last_stride": 1}}}}, "last stage stride 1, 8x8"
    ),
    # Measured on 2 CPU cores: about 1.8x the 8x8 row's time per run and 2.2x the plain CAM's.
    MethodSpec(
        "cam_hires16",
        "maps",
        {"default": {"model": {"backbone_kwargs": {"layer3_stride": 1, "last_stride": 1}}}},
        "third and last stages stride 1, 16x16",
    ),
    MethodSpec(
        "label_smoothing",
        "smoothing",
        {"eps0.1": {"model": {"label_smoothing": 0.1}}, "eps0.2": {"model": {"label_smoothing": 0.2}}},
        "label smoothing",
    ),
    # About 1 and 5 epochs of averaging horizon at ~70 steps per epoch.
    MethodSpec("ema", "ema", {"decay0.99": {"ema": 0.99}, "decay0.998": {"ema": 0.998}}, "EMA of the weights"),
    # Explicit penalties replace the optimizer's decay (SGD's coupled decay 5e-4 equals l2 = 2.5e-4).
    MethodSpec(
        "l2",
        "penalty",
        {f"l2_{v:g}": {"model": {"weight_decay": 0.0, "l2": v}} for v in (1e-3, 5e-3)},
        "explicit L2, no decay",
    ),
    MethodSpec(
        "l1",
        "penalty",
        {f"l1_{v:g}": {"model": {"weight_decay": 0.0, "l1": v}} for v in (1e-5, 5e-5)},
        "explicit L1, no decay",
    ),
    MethodSpec("mixup", "mixing", {"default": _mixer("mixup", alpha=1.0)}, "MixUp alpha 1"),
    MethodSpec("cutmix", "mixing", {"default": _mixer("cutmix", alpha=1.0)}, "CutMix alpha 1"),
    MethodSpec("fmix", "mixing", {"default": _mixer("fmix", alpha=1.0)}, "FMix alpha 1"),
    MethodSpec("resizemix", "mixing", {"default": _mixer("resizemix")}, "ResizeMix scope (0.1, 0.8)"),
    MethodSpec("hmix", "mixing", {"default": _mixer("hmix", alpha=1.0)}, "HMix alpha 1"),
    MethodSpec("gmix", "mixing", {"default": _mixer("gmix", alpha=1.0)}, "GMix alpha 1"),
    # The dynamic mixers (docs/methods.md §18 and §19). PuzzleMix at the reference's Tiny ImageNet (64 px) defaults.
    MethodSpec("puzzlemix", "mixing", {"default": _mixer("puzzlemix")}, "PuzzleMix: saliency graph cut + transport"),
    # AutoMix's encoder momentum 0.999 -> 0.999999 averages over ~1000+ steps, more than a whole run here (~840
    # steps): 0.99 -> 0.999 keeps its horizon at about 1 to 12 epochs, as the paper's is a small part of its run.
    MethodSpec(
        "automix",
        "mixing",
        {"default": _mixer("automix", momentum=0.99, end_momentum=0.999)},
        "AutoMix: learned Mix Block on a momentum encoder",
    ),
    MethodSpec(
        "mixup_cam",
        "method",
        {"default": {"method": "MixUpCAM", **_mixer("mixup", alpha=1.0)}},
        "MixUp-CAM: MixUp alpha 1 + entropy 0.02 + concentration 2e-4",
    ),
    # From scratch at 64 px: no x10 for new layers or x2 for biases (they are for a pretrained trunk), and a
    # rescale of 0.5 instead of 0.3, which would leave 19 px images.
    MethodSpec(
        "seam",
        "method",
        {"default": {"method": "SEAM", "model": {"scale_factor": 0.5, "new_lr_mult": 1.0, "bias_lr_mult": 1.0}}},
        "SEAM, rescale 0.5, PCM maps",
    ),
    # The reference benchmark's comparison rows (Choe et al., CVPR 2020) at its config's defaults.
    MethodSpec("has", "method", {"default": {"method": "HaS"}}, "HaS: hide 4 px grid cells with p 0.5"),
    # New layers half as wide as the trunk's output (128 of 256), as the reference's 1024 of ResNet50's 2048.
    MethodSpec(
        "acol",
        "method",
        {"default": {"method": "ACoL", "model": {"head_channels": 128}}},
        "ACoL: second classifier, erasing threshold 0.7",
    ),
    MethodSpec(
        "spg",
        "method",
        {"default": {"method": "SPG", "model": {"head_channels": 128}}},
        "SPG: self-produced guidance, its 3 threshold pairs",
    ),
    MethodSpec("adl", "method", {"default": {"method": "ADL"}}, "ADL after the last two stages, drop 0.75, γ 0.9"),
    # Methods shown to beat CAM under the fair protocol (Kim et al. CVPR 2022; Wu et al. CVPR 2022). BGC's
    # classification-only warm-up keeps the paper's share of the schedule: 20 of 70 epochs -> 3 of 12.
    MethodSpec(
        "bgc",
        "method",
        {"default": {"method": "BGC", "model": {"warmup_epochs_loc": 3}}},
        "BGC: feature direction and norm losses + attentive-dropout consistency after 3 warm-up epochs",
    ),
    # From scratch BAS collapses in some seeds (the ratio means little while the classifier is still guessing), so a
    # classification-only warm-up, as BGC's, is a variant chosen on the tuning split.
    MethodSpec(
        "bas",
        "method",
        {"default": {"method": "BAS"}, "warmup3": {"method": "BAS", "model": {"warmup_epochs_loc": 3}}},
        "BAS: background activation suppression + area (optionally after 3 classification-only epochs)",
    ),
    # The rows above follow a first reading of the papers; these follow the authors' code where it differs
    # (docs/methods.md §15-16). BGC: two-pass attentive-drop consistency (before ResNet-10's one-block last stage,
    # drop probability 0.25) trained from the first epoch, min-max feature norms, norm regions by the sign of the
    # GT-class cosine, the authors' weights and thresholds; the 3 warm-up epochs of the bgc row.
    MethodSpec(
        "bgc_authors",
        "method",
        {
            "default": {
                "method": "BGC",
                "model": {
                    "warmup_epochs_loc": 3,
                    "consistency": "drop",
                    "drop_prob": 0.25,
                    "tau_drop": 0.8,
                    "consistency_warmup": False,
                    "norm_scaling": "minmax",
                    "norm_regions": "sign",
                    "lambda_sim": 0.5,
                    "lambda_norm": 0.05,
                    "lambda_cons": 2.0,
                    "tau_fg": 0.4,
                    "tau_bg": 0.2,
                },
            }
        },
        "BGC as its authors' code: two-pass drop consistency from epoch 1, min-max norms, sign regions, 0.5/0.05/2",
    ),
    # BAS: the background branch sees the stage-3 features with their gradient cut (the bas row's collapse), times
    # 1 - mask, through frozen layer4 and the frozen head; a one-conv generator on stage 3 (8x8 maps at 64 px, the
    # CAM's 4x4 otherwise); area weight 1.2, foreground 0.5. No warm-up, as the authors. The linear CAM head, not
    # the authors' ReLU'd conv head: from scratch at this lr every logit of that head was 0 within 20 steps (3
    # epochs, n300 seed 0: top-1 10.0, chance), while the linear head trained.
    MethodSpec(
        "bas_authors",
        "method",
        {
            "default": {
                "method": "BAS",
                "model": {
                    "detach_background": True,
                    "mask_stage": "penultimate",
                    "generator": "one_conv",
                    "bas_weight": 1.0,
                    "area_weight": 1.2,
                    "frg_weight": 0.5,
                },
            }
        },
        "BAS as its authors' code: background cut from the features, through frozen layer4, stage-3 generator",
    ),
    # C2AM (docs/methods.md §20): a class-agnostic map from foreground/background contrast across the batch, trained
    # with the CAM head's cross-entropy; the border rule picks the side that is foreground. Its maps are the same for
    # every class, and it takes no mixer: not combinable.
    MethodSpec(
        "c2am",
        None,
        {"default": {"method": "C2AM"}},
        "C2AM: class-agnostic map from fg/bg contrast (rank-weighted) + CE, polarity by the border rule",
    ),
    # The few-shot fully supervised reference row: trained on the tuning split's boxes, never a WSOL method.
    # 500 images, so more epochs than the WSOL rows: 60 epochs are ~470 steps, about half a WSOL run's.
    MethodSpec(
        "fsl",
        None,
        {"default": {"method": "FSL", "train_split": "tune", "epochs": 60}},
        "few-shot fully supervised reference: box masks of the tuning split, per-pixel BCE",
    ),
    # The fully supervised ceiling: the same localizer trained on the GT box of every training image of the regime
    # (Tiny ImageNet's train split has one per image), at the base recipe. A reference row, never a WSOL row: it
    # tells how much room there is above the label-free baseline at this resolution and network size.
    MethodSpec(
        "fsl_all",
        None,
        {"default": {"method": "FSL", "train_split": "regime", "supervision": "boxes"}},
        "fully supervised ceiling: box masks of every training image, per-pixel BCE",
    ),
    # The same ceiling at the 16x16 maps of cam_hires16 (third and last stages stride 1): at 64 px the base
    # recipe's 4x4 maps cap any box read from them, supervised or not. The pooled report takes, per draw, the
    # ceiling row with the better tuning score.
    MethodSpec(
        "fsl_all_hires16",
        None,
        {
            "default": {
                "method": "FSL",
                "train_split": "regime",
                "supervision": "boxes",
                "model": {"backbone_kwargs": {"layer3_stride": 1, "last_stride": 1}},
            }
        },
        "fully supervised ceiling at 16x16 maps: box masks of every training image, per-pixel BCE",
    ),
    # PSOL (Zhang et al., CVPR 2020, arXiv 2002.11359): a WSOL row, since only class labels of the training images
    # are read. Stage 1 is the 16x16-map row's recipe (best tuning MaxBoxAccV2 of the CAM rows); it boxes every
    # training image at its tuning-split τ, and FSL, at the base recipe like the fsl row, learns from those boxes.
    # Not combinable (group None): its recipe is two stages, and FSL takes no mixer.
    MethodSpec(
        "psol",
        None,
        {
            "default": {
                "method": "FSL",
                "train_split": "pseudo",
                "stage1": {"model": {"backbone_kwargs": {"layer3_stride": 1, "last_stride": 1}}},
            }
        },
        "PSOL-style: FSL trained on the 16x16 CAM's pseudo boxes of the training images",
    ),
    # PSOL on fused pseudo boxes: the 16x16 CAM's map fused with the MB+ saliency cue and the centre prior
    # (weights, class-map normalisation and τ chosen on the tuning split) boxes every training image; the localizer
    # learns from those boxes. Its own maps can be fused again at scoring time (the derived rows).
    MethodSpec(
        "psol_fused",
        None,
        {
            "default": {
                "method": "FSL",
                "train_split": "pseudo",
                "pseudo_fusion": {"cue": "mbplus"},
                "stage1": {"model": {"backbone_kwargs": {"layer3_stride": 1, "last_stride": 1}}},
            }
        },
        "PSOL-style on pseudo boxes from the 16x16 CAM fused with MB+ saliency and the centre prior",
    ),
    # PSOL with one self-training round: the stage-2 localizer's maps (better than stage 1's on the tuning split)
    # box the training images again, at its own tuning-split τ, and a fresh localizer learns from those boxes.
    MethodSpec(
        "psol2",
        None,
        {
            "default": {
                "method": "FSL",
                "train_split": "pseudo",
                "rounds": 2,
                "stage1": {"model": {"backbone_kwargs": {"layer3_stride": 1, "last_stride": 1}}},
            }
        },
        "PSOL + 1 self-training round: a second FSL on the first FSL's pseudo boxes",
    ),
)


@dataclass(frozen=True)
class RunSpec:
    """One training run.

    Attributes:
        method: Row name.
        variant: Variant name within the row.
        regime: Regime name (training-set size).
        seed: Seed of weights, shuffling, augmentation and mixing.
        config: The full recipe (base merged with the variant's overrides).
    """

    method: str
    variant: str
    regime: str
    seed: int
    config: dict[str, Any] = field(compare=False, hash=False)

    @property
    def key(self) -> str:
        """``regime/method/variant/seedN``: the run's identity and the relative path of its result."""
        return f"{self.regime}/{self.method}/{self.variant}/seed{self.seed}"


def config_hash(config: Mapping[str, Any]) -> str:
    """Short stable hash of a recipe (key order does not matter)."""
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def combine(rows: Sequence[tuple[MethodSpec, str]]) -> tuple[str, dict[str, Any]]:
    """The overrides of several rows applied together, and the combination's variant name.

    Args:
        rows: ``(row, chosen variant)`` pairs, at most one per group; the order of :data:`SMALL_DATA_METHODS`
            is the merge order (a ``method`` row such as MixUp-CAM then keeps the mixing row's mixer).
    """
    groups = [row.group for row, _ in rows]
    if None in groups or len(set(groups)) != len(groups):
        raise ValueError(f"a combination takes combinable rows from distinct groups, got groups {groups}")
    overrides: dict[str, Any] = {}
    mixers: dict[bool, Any] = {}
    for row, variant in rows:
        change = dict(row.variants[variant])
        # A mixer is replaced whole, never merged key by key; the mixing row's wins over a method's own.
        if change.get("mixer") is not None:
            mixers[row.group == "mixing"] = change.pop("mixer")
        overrides = merge(overrides, change)
    if mixers:
        overrides["mixer"] = mixers.get(True, mixers.get(False))
    # The name is a folder name: no ':' or '/' (Windows, shells), '=' marks a tuned variant.
    name = "+".join(row.name if len(row.variants) == 1 else f"{row.name}={v}" for row, v in rows) or "none"
    return name, overrides


def build_model(config: Mapping[str, Any], num_classes: int, seed: int) -> Any:
    """The LightningModule of a recipe (``wsol.methods`` class, mixer seeded by the run's seed, memory format)."""
    from wsol.augment import create_mixer
    from wsol.methods import get_method

    cls = get_method(config["method"])
    kwargs = dict(config["model"])
    if config.get("mixer"):
        spec = dict(config["mixer"])
        kwargs["mixer"] = create_mixer(spec.pop("name"), seed=seed, **spec)
    model = cls(num_classes=num_classes, batch_size=config["batch_size"], cam_curve_interval=0.01, **kwargs)
    if config.get("channels_last"):  # channels-last weights: the convolutions run in NHWC
        import torch

        model = model.to(memory_format=torch.channels_last)
    return model


def build_callbacks(config: Mapping[str, Any]) -> list[Any]:
    """Training callbacks of a recipe: EMA of the weights (copied into the model when training ends)."""
    if config.get("ema") is None:
        return []
    from pytorch_lightning.callbacks import EMAWeightAveraging

    return [EMAWeightAveraging(decay=float(config["ema"]))]
