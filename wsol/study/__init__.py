"""Studies: grids of training runs with resume, fair tuning-split selection and a results report.

``wsol study small-data`` runs the registered rows (:func:`study_rows`: :data:`~wsol.study.grid.SMALL_DATA_METHODS`,
then the rows plugins add with :func:`register_row`) on Tiny ImageNet 10; see ``experiments/small_data/README.md``
for the protocol.

The names below load on first use (PEP 562), so that listing the rows (``wsol study small-data --help``) imports
no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE: dict[str, str] = {
    "StudyData": "wsol.study.data",
    "load_study_data": "wsol.study.data",
    "split_per_class": "wsol.study.data",
    "BASE_CONFIG": "wsol.study.grid",
    "SMALL_DATA_METHODS": "wsol.study.grid",
    "MethodSpec": "wsol.study.grid",
    "RunSpec": "wsol.study.grid",
    "combine": "wsol.study.grid",
    "merge": "wsol.study.grid",
    "Plan": "wsol.study.planner",
    "choose_combination": "wsol.study.planner",
    "plan_runs": "wsol.study.planner",
    "write_report": "wsol.study.report",
    "STUDY_ROWS": "wsol.study.rows",
    "RecipeOverrides": "wsol.study.rows",
    "get_row": "wsol.study.rows",
    "register_row": "wsol.study.rows",
    "study_rows": "wsol.study.rows",
    "StudySettings": "wsol.study.runner",
    "run_study": "wsol.study.runner",
    "train_and_score": "wsol.study.runner",
    "SplitCurves": "wsol.study.scoring",
    "fair_scores": "wsol.study.scoring",
    "reference_rows": "wsol.study.scoring",
    "score_model": "wsol.study.scoring",
    "summarize": "wsol.study.scoring",
}

__all__ = [
    "BASE_CONFIG",
    "SMALL_DATA_METHODS",
    "STUDY_ROWS",
    "MethodSpec",
    "Plan",
    "RecipeOverrides",
    "RunSpec",
    "SplitCurves",
    "StudyData",
    "StudySettings",
    "choose_combination",
    "combine",
    "fair_scores",
    "get_row",
    "load_study_data",
    "merge",
    "plan_runs",
    "reference_rows",
    "register_row",
    "run_study",
    "score_model",
    "split_per_class",
    "study_rows",
    "summarize",
    "train_and_score",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'wsol.study' has no attribute {name!r}")
