"""Voting-based error correction: first-to-ahead-by-k, majority, red flags and reliability math."""

from __future__ import annotations

from .ahead_by_k import MAKER, FirstToAheadByK
from .base import Ballot, Decision, Parser, Voter
from .calibration import Calibration, sample_ballot
from .diagnostics import trace_calibration
from .majority import Majority
from .redflags import NO_RED_FLAGS, PARSE, TOO_LONG, TRUNCATED, RedFlagPolicy
from .reliability import (
    PEstimate,
    estimate_p,
    expected_cost,
    expected_samples,
    k_min,
    step_error,
    task_success,
)
from .spec import VoterKind, VoterSpec
from .transforms import IDENTITY, AnswerTransform, Spread

__all__ = [
    "IDENTITY",
    "MAKER",
    "NO_RED_FLAGS",
    "PARSE",
    "TOO_LONG",
    "TRUNCATED",
    "AnswerTransform",
    "Ballot",
    "Calibration",
    "Decision",
    "FirstToAheadByK",
    "Majority",
    "PEstimate",
    "Parser",
    "RedFlagPolicy",
    "Spread",
    "Voter",
    "VoterKind",
    "VoterSpec",
    "estimate_p",
    "expected_cost",
    "expected_samples",
    "k_min",
    "sample_ballot",
    "step_error",
    "task_success",
    "trace_calibration",
]
