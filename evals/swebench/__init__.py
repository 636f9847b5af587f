"""SWE-bench: instance files, a MASAI-style default pipeline, local grading by running the tests, and swe_mini.

- :func:`load_instances` reads SWE-bench instance files (JSON, JSONL; parquet with ``mdap[swebench]``).
- :func:`masai_pipeline` builds the default pipeline of one instance: test template -> reproducer ->
  localizer -> fixers -> ranker, its workers confined to a checkout of the local repository.
- :func:`run_swebench` runs it over instances: ``predictions.jsonl`` (the official harness's format),
  trajectories, local grades, ``report.json`` and ``summary.json``; resumable.
- :func:`grade_predictions` grades predictions from any tool: fresh checkout, model patch + test patch, pytest,
  SWE-bench's rule (the ``swebench`` package's grading functions where it is installed).
- :func:`build_mini` writes the swe_mini suite (six small real repositories with real bugs).
"""

from __future__ import annotations

from ._mini import MiniSuite, build_mini, mini_data_dir
from .grading import GradeReport, InstanceGrade, grade_instance, grade_predictions, patch_files
from .instances import SWEInstance, load_instances, repo_path
from .official import docker_problem, run_official
from .patches import PatchError, apply_fix, normalize_patch, parse_fix
from .pipeline import ROLES, PipelineOptions, masai_pipeline, masai_plan
from .predictions import Prediction, append_prediction, load_predictions
from .ranker import Candidate, RankResult, choose, parse_targets, rank
from .rules import grade_tests, grader
from .run import InstanceResult, SWEBenchSummary, run_instance, run_swebench
from .simulated import diff_to_edits, simulated_swebench_model, solved_by_rate
from .tables import grade_table, run_table
from .testrun import TestRun, files_of_tests, parse_pytest_summary, run_pytest

__all__ = [
    "ROLES",
    "Candidate",
    "GradeReport",
    "InstanceGrade",
    "InstanceResult",
    "MiniSuite",
    "PatchError",
    "PipelineOptions",
    "Prediction",
    "RankResult",
    "SWEBenchSummary",
    "SWEInstance",
    "TestRun",
    "append_prediction",
    "apply_fix",
    "build_mini",
    "choose",
    "diff_to_edits",
    "docker_problem",
    "files_of_tests",
    "grade_instance",
    "grade_predictions",
    "grade_table",
    "grade_tests",
    "grader",
    "load_instances",
    "load_predictions",
    "masai_pipeline",
    "masai_plan",
    "mini_data_dir",
    "normalize_patch",
    "parse_fix",
    "parse_pytest_summary",
    "parse_targets",
    "patch_files",
    "rank",
    "repo_path",
    "run_instance",
    "run_official",
    "run_pytest",
    "run_swebench",
    "run_table",
    "simulated_swebench_model",
    "solved_by_rate",
]
