"""mdap: massively decomposed agentic processes.

Decompose a long task into many small steps, decide each step by voting among independent samples of a small
model (first-to-ahead-by-k with red flags), and the whole task becomes reliable. See README.md.
"""

from __future__ import annotations

from mdap.errors import (
    CheckpointError,
    ConfigError,
    MdapError,
    ModelError,
    PlanError,
    PoolError,
    RedFlag,
    VoteFailed,
)
from mdap.executor import Executor
from mdap.microstep import Chain, Microstep, Verifier
from mdap.models import ChatModel, Sample, SimulatedModel
from mdap.report import RunReport
from mdap.types import Message
from mdap.voters import Decision, FirstToAheadByK, Majority, RedFlagPolicy, Voter

__version__ = "0.1.0"

__all__ = [
    "Chain",
    "ChatModel",
    "CheckpointError",
    "ConfigError",
    "Decision",
    "Executor",
    "FirstToAheadByK",
    "Majority",
    "MdapError",
    "Message",
    "Microstep",
    "ModelError",
    "PlanError",
    "PoolError",
    "RedFlag",
    "RedFlagPolicy",
    "RunReport",
    "Sample",
    "SimulatedModel",
    "Verifier",
    "VoteFailed",
    "Voter",
]
