"""Towers of Hanoi (MAKER replication): the task, a strategy solver, an independent verifier, the runner."""

from __future__ import annotations

from .pool_kind import HANOI_KIND, hanoi_kind, register_pool_kinds
from .run import HanoiConfig, hanoi_chain, run_hanoi
from .solver import hanoi_oracle, hanoi_wrong_answer, simulated_hanoi_model, strategy_move
from .task import SYSTEM_PROMPT, HanoiAnswer, HanoiState, HanoiStep, format_answer
from .verify import optimal_move, verify_step

__all__ = [
    "HANOI_KIND",
    "SYSTEM_PROMPT",
    "HanoiAnswer",
    "HanoiConfig",
    "HanoiState",
    "HanoiStep",
    "format_answer",
    "hanoi_chain",
    "hanoi_kind",
    "hanoi_oracle",
    "hanoi_wrong_answer",
    "optimal_move",
    "register_pool_kinds",
    "run_hanoi",
    "simulated_hanoi_model",
    "strategy_move",
    "verify_step",
]
