"""Distillation: training data for worker adapters from traces or a programmatic teacher, and the reliability
evaluation of an adapter on held-out steps through a real server."""

from __future__ import annotations

from .dataset import (
    dedup,
    hanoi_answer_text,
    hanoi_teacher,
    hanoi_trace_examples,
    hard_weight,
    parse_disks,
    reweight,
    split_heldout,
    trace_examples,
)

__all__ = [
    "dedup",
    "hanoi_answer_text",
    "hanoi_teacher",
    "hanoi_trace_examples",
    "hard_weight",
    "parse_disks",
    "reweight",
    "split_heldout",
    "trace_examples",
]
