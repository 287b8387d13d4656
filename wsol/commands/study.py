"""``wsol study``: grids of training runs with resume; ``small-data`` is the small-data regularizer study."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from wsol.commands.arguments import add_deprecated, parse_data, parse_json_option

# Replaced by the registered rows when help is shown (the rows are not read to build the parser).
ROWS_PLACEHOLDER = "<registered rows>"


def row_names() -> list[str]:
    """The registered study rows, in order (:func:`wsol.study.rows.study_rows`)."""
    from wsol.study.rows import study_rows

    return [row.name for row in study_rows()]


class RowsHelpFormatter(argparse.HelpFormatter):
    """Help whose row lists come from the row registry, read only when help is shown."""

    def _fill_rows(self, text: str) -> str:
        return text.replace(ROWS_PLACEHOLDER, ", ".join(row_names())) if ROWS_PLACEHOLDER in text else text

    def _format_text(self, text: str) -> str:
        return super()._format_text(self._fill_rows(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return self._fill_rows(super()._expand_help(action))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``wsol study`` and its ``small-data`` study to the top-level parser."""
    p = subparsers.add_parser(
        "study",
        help="run a study grid (resumable) and write results.csv, results.md and results.png",
        description="Run a grid of training configurations and report them (see experiments/small_data/README.md).",
    )
    studies = p.add_subparsers(dest="study", metavar="STUDY", required=True)
    s = studies.add_parser(
        "small-data",
        help="CAM regularizers on Tiny ImageNet 10 from scratch, tuned on a split of train, reported on val",
        description=(
            "Train every registered row of the small-data grid, then the best combination, for every seed "
            "and regime; choose variants, the combination and the CAM threshold on a tuning split carved out of "
            "train; score val with both the reference's MaxBoxAccV2 (τ on val) and the fair one (τ from tuning). "
            "One JSON per finished run under OUT/runs: rerunning resumes. The report is rewritten after each run. "
            f"Rows (a plugin adds its own with wsol.study.register_row): {ROWS_PLACEHOLDER}."
        ),
        formatter_class=RowsHelpFormatter,
    )
    s.add_argument(
        "--data",
        default="tiny_imagenet",
        help="dataset NAME[=PATH], or a Tiny ImageNet folder (default: tiny_imagenet, from "
        "$WSOL_DATA/tiny_imagenet_10; synthetic for demos)",
    )
    add_deprecated(s, "--dataset", "dataset", "use --data NAME=PATH", takes_value=True)
    s.add_argument("--data-options", default=None, help="JSON options of the reader, e.g. '{\"num_classes\": 3}'")
    s.add_argument("--out", default="experiments/small_data", help="output folder (default: %(default)s)")
    s.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per configuration (default: %(default)s)")
    s.add_argument(
        "--regimes",
        default="all,300",
        help="training-set regimes: 'all' (train minus tuning) or images per class (default: %(default)s)",
    )
    s.add_argument("--no-combination", action="store_true", help="do not add the best-combination row")
    _add_run_options(s)
    s.set_defaults(func=run, dataset=None)
    _register_draws(studies)


def _add_run_options(s: argparse.ArgumentParser) -> None:
    """The options every study shares: rows, seeds to train here, recipe overrides, device, output."""
    s.add_argument(
        "--run-seeds",
        default=None,
        help="comma-separated seeds whose runs this process trains (default: all), to split a grid across "
        "processes or machines sharing --out; variants are still chosen on seed 0, so a process whose remaining "
        "runs wait for seed 0 (or, for the combination row, every seed) trains what it can and stops with an error "
        "saying so: rerun it once they are done",
    )
    s.add_argument("--tune-per-class", type=int, default=50, help="tuning images per class (default: %(default)s)")
    s.add_argument("--split-seed", type=int, default=0, help="seed of the tuning split and subsets (default: 0)")
    s.add_argument(
        "--methods", default=None, help=f"comma-separated rows to run (default: every row): {ROWS_PLACEHOLDER}"
    )
    s.add_argument(
        "--refresh",
        default=None,
        help="comma-separated rows whose finished runs lack the per-normalisation scores: retrain and rescore them",
    )
    s.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the recipe's 12)")
    s.add_argument("--width", type=int, default=None, help="ResNet-10 base width (default: the recipe's 32)")
    s.add_argument(
        "--precision",
        default=None,
        help="Lightning training precision, e.g. 32-true (default: the recipe's bf16-mixed; maps scored in float32)",
    )
    s.add_argument("--image-size", type=int, default=64, help="image side (default: %(default)s)")
    s.add_argument("--limit-train-batches", type=int, default=None, help="batches per epoch (smoke tests)")
    s.add_argument("--cam-curve-interval", type=float, default=0.001, help="τ grid step (default: %(default)s)")
    s.add_argument("--device", default="auto", help="Lightning accelerator: auto, cpu, cuda (default: %(default)s)")
    add_deprecated(s, "--accelerator", "device", "use --device", takes_value=True)
    s.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    s.add_argument("--dry-run", action="store_true", help="print the planned runs and their state, train nothing")
    s.add_argument("--report-only", action="store_true", help="rewrite the report from finished runs, train nothing")
    s.add_argument("--lightning-bar", action="store_true", help="show Lightning's progress bar inside each run")
    s.add_argument("--no-progress", action="store_true", help="no progress bar over runs")
    s.add_argument(
        "--no-model-store",
        action="store_true",
        help="train every model afresh and keep none under OUT/models/ (by default a PSOL-style row's stage 1 "
        "and the cam_hires16 run of the same seed share one trained model)",
    )


def _register_draws(studies: argparse._SubParsersAction) -> None:
    d = studies.add_parser(
        "draws",
        help="the small-data study over several class draws of Tiny ImageNet-200, with a pooled report",
        description=(
            "Run the small-data rows on the dev draw and on N held-out draws of Tiny ImageNet-200 (seeded, "
            "disjoint from each other and from the dev classes, cut once from --source into --draws-root), then "
            "pool them: every row against each draw's label-free baseline, paired per draw and seed, with a "
            "bootstrap interval and the fully supervised ceiling (see experiments/small_data_draws/README.md). "
            "Every choice is made on each draw's own tuning split. Rerunning resumes."
        ),
        formatter_class=RowsHelpFormatter,
    )
    d.add_argument("--source", default=None, help="a full Tiny ImageNet-200 folder (only read to cut missing draws)")
    d.add_argument(
        "--draws-root",
        default=None,
        help="where the draws are cut to, h1..hN (default: $WSOL_DATA/tiny_imagenet_draws); never the repository",
    )
    d.add_argument("--dev", default=None, help="the dev draw's folder (default: $WSOL_DATA/tiny_imagenet_10)")
    d.add_argument("--n-draws", type=int, default=4, help="held-out draws (default: %(default)s)")
    d.add_argument("--classes", type=int, default=10, help="classes per draw (default: %(default)s)")
    d.add_argument("--draws", default=None, help="comma-separated draws to train here, e.g. dev,h2 (default: all)")
    d.add_argument("--out", default="experiments/small_data_draws", help="output folder (default: %(default)s)")
    d.add_argument("--seeds", type=int, default=2, help="seeds per held-out draw (default: %(default)s)")
    d.add_argument("--dev-seeds", type=int, default=3, help="seeds on the dev draw (default: %(default)s)")
    d.add_argument("--regime", default="all", help="the one training regime pooled (default: %(default)s)")
    d.add_argument(
        "--fusion-cue",
        default="mbplus",
        help="label-free cue fused with every kept class map into the derived rows ROW+CUE and ROW_tta+CUE "
        "(weights on tune; 'none' to skip; default: %(default)s)",
    )
    d.add_argument(
        "--fusion-rows",
        default="cam,cam_hires16,psol2,psol_fused,c2am",
        help="rows whose kept maps are fused with --fusion-cue (each run once, then cached: 1 to 6 minutes on two "
        "CPU cores for its plain and test-time augmented maps; default: %(default)s)",
    )
    d.add_argument(
        "--fusion-workers",
        type=int,
        default=None,
        help="processes that fuse the runs not yet cached, one run each (default: one per CPU core)",
    )
    _add_run_options(d)
    d.set_defaults(func=run_draws)


def parse_regimes(text: str) -> dict[str, int | None]:
    """``"all,300"`` -> ``{"all": None, "n300": 300}``."""
    regimes: dict[str, int | None] = {}
    for item in (v.strip() for v in text.split(",") if v.strip()):
        if item == "all":
            regimes["all"] = None
        elif item.isdigit() and int(item) > 0:
            regimes[f"n{int(item)}"] = int(item)
        else:
            raise ValueError(f"--regimes items must be 'all' or a positive count per class, got {item!r}")
    if not regimes:
        raise ValueError("--regimes names no regime")
    return regimes


def _rows(args: argparse.Namespace) -> tuple[tuple, tuple[str, ...]]:
    """The rows of ``--methods`` (default: every registered row) and of ``--refresh``, checked against the
    registry (the built-in rows, then the plugins')."""
    from wsol.study.rows import study_rows

    rows = study_rows()
    known = {m.name: m for m in rows}
    methods = rows
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in known]
        if unknown:
            raise ValueError(f"unknown --methods {unknown}; rows: {', '.join(known)}")
        methods = tuple(m for m in rows if m.name in wanted)
    refresh = tuple(m.strip() for m in (args.refresh or "").split(",") if m.strip())
    unknown = [m for m in refresh if m not in known]
    if unknown:
        raise ValueError(f"unknown --refresh rows {unknown}")
    return methods, refresh


def _settings(args: argparse.Namespace, out: str, seeds: int, run_seeds: tuple[int, ...], combination: bool) -> Any:
    """The runner's settings from the shared options (recipe overrides, device, τ step, progress)."""

    import torch

    from wsol.study import StudySettings

    base: dict = {}
    if args.epochs is not None:
        base["epochs"] = args.epochs
    if args.precision is not None:
        base["precision"] = args.precision
    if args.width is not None:
        base["model"] = {"backbone_kwargs": {"width": args.width}}
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return StudySettings(
        out=Path(out),
        seeds=tuple(range(seeds)),
        base=base,
        combination=combination,
        cam_curve_interval=args.cam_curve_interval,
        accelerator="gpu" if args.device.startswith("cuda") else args.device,
        limit_train_batches=args.limit_train_batches,
        lightning_bar=args.lightning_bar,
        progress=not args.no_progress,
        refresh=args.refresh_rows,
        run_seeds=run_seeds,
        keep_models=not args.no_model_store,
    )


def run(args: argparse.Namespace) -> int:
    """Run, resume, list (``--dry-run``) or report (``--report-only``) the small-data grid.

    Returns:
        0 when every planned run has a result, 1 when some failed.
    """
    from wsol.study import load_study_data, run_study

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    run_seeds = parse_run_seeds(args.run_seeds, args.seeds)
    methods, args.refresh_rows = _rows(args)
    settings = _settings(args, args.out, args.seeds, run_seeds, not args.no_combination)
    options = parse_json_option(args.data_options, "--data-options")
    name, root = parse_data(args.data, folder_reader="tiny_imagenet", reader=args.dataset)
    data = load_study_data(
        name,
        root,
        image_size=args.image_size,
        tune_per_class=args.tune_per_class,
        regimes=parse_regimes(args.regimes),
        split_seed=args.split_seed,
        train_options=options,
        val_options=options,
    )
    code = run_study(data, settings, methods, dry_run=args.dry_run, report_only=args.report_only)
    if not args.dry_run:
        print(f"report: {settings.out / 'results.md'}, {settings.out / 'results.csv'}, {settings.out / 'results.png'}")
    return code


def _data_folder(value: str | None, default: str, flag: str) -> Path:
    import os

    if value:
        return Path(value)
    base = os.environ.get("WSOL_DATA")
    if not base:
        raise ValueError(f"{flag} not given and WSOL_DATA is not set: pass {flag} DIR or set WSOL_DATA")
    return Path(base) / default


def _draw_data(draw: Any, args: argparse.Namespace, regimes: dict[str, int | None]) -> Any:
    from wsol.study import load_study_data

    return load_study_data(
        "tiny_imagenet",
        str(draw.folder),
        image_size=args.image_size,
        tune_per_class=args.tune_per_class,
        regimes=regimes,
        split_seed=args.split_seed,
    )


def run_draws(args: argparse.Namespace) -> int:
    """Cut the missing draws, run (or resume) the rows on each draw, then write the pooled report.

    Returns:
        0 when every planned run of every draw has a result, 1 when some failed.
    """

    from wsol.study import run_study
    from wsol.study.draws import prepare_draws, read_draws, write_draws
    from wsol.study.pooled import collect_draw, write_pooled_report

    if args.seeds < 1 or args.dev_seeds < 1:
        raise ValueError(f"--seeds and --dev-seeds must be >= 1, got {args.seeds} and {args.dev_seeds}")
    if args.n_draws < 1:
        raise ValueError(f"--n-draws must be >= 1, got {args.n_draws}")
    if args.fusion_workers is not None and args.fusion_workers < 1:
        raise ValueError(f"--fusion-workers must be >= 1, got {args.fusion_workers}")
    run_seeds = parse_run_seeds(args.run_seeds, max(args.seeds, args.dev_seeds))
    methods, args.refresh_rows = _rows(args)
    regimes = parse_regimes(args.regime)
    if len(regimes) != 1:
        raise ValueError(f"--regime names one regime, got {args.regime!r}")
    regime = next(iter(regimes))
    dev = _data_folder(args.dev, "tiny_imagenet_10", "--dev")
    root = _data_folder(args.draws_root, "tiny_imagenet_draws", "--draws-root")
    draws = prepare_draws(Path(args.source) if args.source else None, root, dev, args.n_draws, args.classes)
    wanted = [d.strip() for d in (args.draws or "").split(",") if d.strip()]
    unknown = [d for d in wanted if d not in {draw.name for draw in draws}]
    if unknown:
        raise ValueError(f"unknown --draws {unknown}; draws: {', '.join(d.name for d in draws)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_draws(out / "draws.json", draws)
    code = 0
    datas = {}
    for draw in draws:
        if wanted and draw.name not in wanted:
            continue
        seeds = args.dev_seeds if draw.name == "dev" else args.seeds
        here = tuple(s for s in run_seeds if s < seeds)
        if run_seeds and not here:
            continue
        print(f"draw {draw.name}: {', '.join(draw.words[w] for w in draw.wnids)}")
        datas[draw.name] = data = _draw_data(draw, args, regimes)
        settings = _settings(args, str(out / draw.name), seeds, here, combination=False)
        code = max(code, run_study(data, settings, methods, dry_run=args.dry_run, report_only=args.report_only))
    if args.dry_run:
        return code
    scores = []
    for draw in draws:
        folder = out / draw.name
        if not (folder / "runs").is_dir():
            continue
        derived: list = []
        if args.fusion_cue != "none":
            from wsol.study.fusion import fused_runs

            data = datas.get(draw.name) or _draw_data(draw, args, regimes)
            rows = [r.strip() for r in args.fusion_rows.split(",") if r.strip()]
            derived = fused_runs(
                folder,
                data,
                cue=args.fusion_cue,
                rows=rows,
                regimes=[regime],
                workers=args.fusion_workers,
                progress=not args.no_progress,
            )
        scores.append(collect_draw(draw.name, folder, regime, derived))
    if scores:
        paths = write_pooled_report(out, scores, read_draws(out / "draws.json"))
        print(f"pooled report: {paths['markdown']}, {paths['csv']}, {paths['plot']}")
    return code


def parse_run_seeds(value: str | None, seeds: int) -> tuple[int, ...]:
    """``--run-seeds "1,2"`` as ``(1, 2)``; empty for None. Raises a ValueError naming the flag for a seed that is
    not an integer in ``[0, seeds)``."""
    if not value:
        return ()
    out = []
    for part in value.split(","):
        try:
            seed = int(part.strip())
        except ValueError:
            raise ValueError(f"--run-seeds: {part.strip()!r} is not an integer") from None
        if not 0 <= seed < seeds:
            raise ValueError(f"--run-seeds: seed {seed} is outside 0..{seeds - 1} (--seeds {seeds})")
        out.append(seed)
    return tuple(dict.fromkeys(out))
