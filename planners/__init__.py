"""Planners turn a task into a validated plan: a DAG of subtasks, each for a worker role.

``LLMPlanner`` asks a model for a JSON plan (validated, re-asked on error), ``StaticPlanner`` returns one
written in Python (with the ``fork_join`` and ``chain`` helpers), ``RecursivePlanner`` plans too-big
subtasks again.
"""

from __future__ import annotations

from .base import Expander, Planner, count_red_flag, count_red_flags
from .llm import PLANNER_SYSTEM, LLMPlanner, plan_schema
from .plan import (
    FailureNote,
    Plan,
    ReplanContext,
    Subtask,
    Task,
    canonical_key,
    parse_plan,
    role_table,
    validate_plan,
)
from .recursive import RecursivePlanner
from .static import StaticPlanner, chain, fork_join

__all__ = [
    "PLANNER_SYSTEM",
    "Expander",
    "FailureNote",
    "LLMPlanner",
    "Plan",
    "Planner",
    "RecursivePlanner",
    "ReplanContext",
    "StaticPlanner",
    "Subtask",
    "Task",
    "canonical_key",
    "chain",
    "count_red_flag",
    "count_red_flags",
    "fork_join",
    "parse_plan",
    "plan_schema",
    "role_table",
    "validate_plan",
]
