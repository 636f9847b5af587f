"""Pipelines: the planner -> coordinator -> worker graph on LangGraph, defined in Python.

``Pipeline`` is the builder (re-exported from ``mdap``); the coordinator runs a plan's subtasks with bounded
asyncio inside one LangGraph node; workers are voted microagents with tools.
"""

from __future__ import annotations

from .coordinator import CoordinatorPolicy, ExecOutcome, Execution, SubtaskResult
from .events import EVENT_KINDS, Event, EventBus, JsonlTrace
from .pipeline import DEFAULT_CHECKPOINT, CompiledPipeline, Pipeline
from .results import RunResult
from .roles import WorkerRole, default_voter
from .sandbox import Completed, Limits, Sandbox
from .stream import RunStream
from .tools import Tool, Workspace, builtin_tools, file_tools, python_tool, shell_tool, tool_failed
from .work import Artifact, LocalRunner, RunScope, SubtaskRunner, WorkItem, WorkOutput
from .worker import Worker

__all__ = [
    "DEFAULT_CHECKPOINT",
    "EVENT_KINDS",
    "Artifact",
    "CompiledPipeline",
    "Completed",
    "CoordinatorPolicy",
    "Event",
    "EventBus",
    "ExecOutcome",
    "Execution",
    "JsonlTrace",
    "Limits",
    "LocalRunner",
    "Pipeline",
    "RunResult",
    "RunScope",
    "RunStream",
    "Sandbox",
    "SubtaskRunner",
    "SubtaskResult",
    "Tool",
    "WorkItem",
    "WorkOutput",
    "Worker",
    "WorkerRole",
    "Workspace",
    "builtin_tools",
    "default_voter",
    "file_tools",
    "python_tool",
    "shell_tool",
    "tool_failed",
]
