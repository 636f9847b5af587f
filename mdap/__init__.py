"""mdap: massively decomposed agentic processes.

Decompose a long task into many small steps, decide each step by voting among independent samples of a small
model (first-to-ahead-by-k with red flags), and the whole task becomes reliable. See README.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from mdap.types import Message
from mdap.usage import Usage

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mdap.agents import CoordinatorPolicy, Pipeline, RunResult, Tool, WorkerRole
    from mdap.executor import Executor
    from mdap.microstep import Chain, Microstep, Verifier
    from mdap.models import Adapter, ChatModel, LocalModel, OpenAICompatible, Sample, SimulatedModel, VLLMServer
    from mdap.planners import LLMPlanner, Plan, RecursivePlanner, StaticPlanner, Subtask, Task
    from mdap.report import RunReport
    from mdap.voters import Decision, FirstToAheadByK, Majority, RedFlagPolicy, Voter

# Everything but the errors is imported on first use, so `import mdap` (and `mdap --help`) stays light: the
# runtime pulls in pydantic, pipelines LangGraph and networkx.
_LAZY = {
    "Executor": "mdap.executor",
    "Chain": "mdap.microstep",
    "Microstep": "mdap.microstep",
    "Verifier": "mdap.microstep",
    "Adapter": "mdap.models",
    "ChatModel": "mdap.models",
    "LocalModel": "mdap.models",
    "OpenAICompatible": "mdap.models",
    "Sample": "mdap.models",
    "SimulatedModel": "mdap.models",
    "VLLMServer": "mdap.models",
    "RunReport": "mdap.report",
    "Decision": "mdap.voters",
    "FirstToAheadByK": "mdap.voters",
    "Majority": "mdap.voters",
    "RedFlagPolicy": "mdap.voters",
    "Voter": "mdap.voters",
    "CoordinatorPolicy": "mdap.agents",
    "Pipeline": "mdap.agents",
    "RunResult": "mdap.agents",
    "Tool": "mdap.agents",
    "WorkerRole": "mdap.agents",
    "LLMPlanner": "mdap.planners",
    "Plan": "mdap.planners",
    "RecursivePlanner": "mdap.planners",
    "StaticPlanner": "mdap.planners",
    "Subtask": "mdap.planners",
    "Task": "mdap.planners",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mdap' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Adapter",
    "Chain",
    "ChatModel",
    "CheckpointError",
    "ConfigError",
    "CoordinatorPolicy",
    "Decision",
    "Executor",
    "FirstToAheadByK",
    "LLMPlanner",
    "LocalModel",
    "Majority",
    "MdapError",
    "Message",
    "Microstep",
    "ModelError",
    "OpenAICompatible",
    "Pipeline",
    "Plan",
    "PlanError",
    "PoolError",
    "RecursivePlanner",
    "RedFlag",
    "RedFlagPolicy",
    "RunReport",
    "RunResult",
    "Sample",
    "SimulatedModel",
    "StaticPlanner",
    "Subtask",
    "Task",
    "Tool",
    "Usage",
    "VLLMServer",
    "Verifier",
    "VoteFailed",
    "Voter",
    "WorkerRole",
]
