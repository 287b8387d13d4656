"""Studies: grids of training runs with resume, fair tuning-split selection and a results report.

``wsol study small-data`` runs :data:`~wsol.study.grid.SMALL_DATA_METHODS` on Tiny ImageNet 10; see
``experiments/small_data/README.md`` for the protocol.
"""

from wsol.study.data import StudyData, load_study_data, split_per_class
from wsol.study.grid import BASE_CONFIG, SMALL_DATA_METHODS, MethodSpec, RunSpec, combine, merge
from wsol.study.planner import Plan, choose_combination, plan_runs
from wsol.study.report import write_report
from wsol.study.runner import StudySettings, run_study, train_and_score
from wsol.study.scoring import SplitCurves, fair_scores, reference_rows, score_model, summarize

__all__ = [
    "BASE_CONFIG",
    "SMALL_DATA_METHODS",
    "MethodSpec",
    "Plan",
    "RunSpec",
    "SplitCurves",
    "StudyData",
    "StudySettings",
    "choose_combination",
    "combine",
    "fair_scores",
    "load_study_data",
    "merge",
    "plan_runs",
    "reference_rows",
    "run_study",
    "score_model",
    "split_per_class",
    "summarize",
    "train_and_score",
    "write_report",
]
