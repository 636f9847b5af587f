"""GAIA: load the official metadata files, run questions through the default pipeline, score them by the
official rules, and write the leaderboard submission, per-question results and a summary by level.

mdap never downloads GAIA (it is gated): point :func:`load_gaia` / ``mdap bench gaia --data DIR`` at your copy,
or use :data:`MINI_DATA`, the small offline suite shipped in the same layout.
"""

from __future__ import annotations

from .loader import HIDDEN_ANSWER, MINI_DATA, PARQUET_HINT, GaiaQuestion, find_split, load_gaia
from .pipeline import (
    ANSWER_RULES,
    ANSWERER_PROMPT,
    FINAL_ID,
    SOLVER_PROMPT,
    GaiaPlanner,
    extract_final_answer,
    gaia_pipeline,
    gaia_task,
)
from .results import (
    RESULTS_FILE,
    SUBMISSION_FILE,
    SUMMARY_FILE,
    GaiaResult,
    GaiaSummary,
    LevelScore,
    format_table,
    read_results,
    summarize,
)
from .run import GaiaConfig, run_gaia, solve_question
from .scorer import normalize_number, normalize_text, score
from .simulated import known_subset, simulated_gaia_model, wrong_answer
from .tools import attachment_tool, calculate, calculator_tool

__all__ = [
    "ANSWERER_PROMPT",
    "ANSWER_RULES",
    "FINAL_ID",
    "HIDDEN_ANSWER",
    "MINI_DATA",
    "PARQUET_HINT",
    "RESULTS_FILE",
    "SOLVER_PROMPT",
    "SUBMISSION_FILE",
    "SUMMARY_FILE",
    "GaiaConfig",
    "GaiaPlanner",
    "GaiaQuestion",
    "GaiaResult",
    "GaiaSummary",
    "LevelScore",
    "attachment_tool",
    "calculate",
    "calculator_tool",
    "extract_final_answer",
    "find_split",
    "format_table",
    "gaia_pipeline",
    "gaia_task",
    "known_subset",
    "load_gaia",
    "normalize_number",
    "normalize_text",
    "read_results",
    "run_gaia",
    "score",
    "simulated_gaia_model",
    "solve_question",
    "summarize",
    "wrong_answer",
]
