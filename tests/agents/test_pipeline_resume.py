"""Checkpointing: a killed run resumes without redoing finished subtasks; human approval pauses and resumes."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from pipeline_helpers import Tracking, answer, instruction

from mdap.agents import Pipeline
from mdap.errors import CheckpointError, ConfigError
from mdap.planners import Plan, StaticPlanner, chain
from mdap.types import Message
from mdap.voters import FirstToAheadByK

STEPS = 8

# The child builds the same pipeline as the test and logs every model call; the test kills it mid-run.
CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, re
    from mdap.agents import Pipeline
    from mdap.models import SimulatedModel
    from mdap.planners import StaticPlanner, chain
    from mdap.voters import FirstToAheadByK

    db, log, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def oracle(messages):
        ins = re.search(r"^Instruction: (.*)$", messages[-1]["content"], re.M).group(1)
        with open(log, "a") as f:
            f.write(ins + "\\n")
        deps = re.findall(r"^\\[(step\\d+)\\] (.*)$", messages[-1]["content"], re.M)
        return json.dumps({"answer": ins + " after " + (deps[0][1] if deps else "nothing")})

    pipeline = (
        Pipeline(model=SimulatedModel(oracle, latency_s=0.15))
        .planner(StaticPlanner(chain([f"task {i}" for i in range(steps)], role="w")))
        .role("w", voter=FirstToAheadByK(k=1, temperature=0.0, max_samples=2))
        .checkpoint(db)
    )
    asyncio.run(pipeline.run("count", thread_id="t1"))
    """
)


def _oracle(calls: list[str]):  # type: ignore[no-untyped-def]
    import re

    def oracle(messages: Sequence[Message]) -> str:
        ins = instruction(messages)
        calls.append(ins)
        deps = re.findall(r"^\[(step\d+)\] (.*)$", messages[-1]["content"], re.M)
        return answer(ins + " after " + (deps[0][1] if deps else "nothing"))

    return oracle


def _pipeline(db: Path, calls: list[str]) -> Pipeline:
    return (
        Pipeline(model=Tracking(_oracle(calls)))
        .planner(StaticPlanner(chain([f"task {i}" for i in range(STEPS)], role="w")))
        .role("w", voter=FirstToAheadByK(k=1, temperature=0.0, max_samples=2))
        .checkpoint(db)
    )


def _persisted_or_0(db: Path) -> int:
    """:func:`_persisted`, or 0 while the child has not made its store yet."""
    try:
        return _persisted(db) if db.with_name("runs.results.sqlite").exists() else 0
    except sqlite3.OperationalError:  # the table is not there yet, or the child holds a lock
        return 0


def _persisted(db: Path) -> int:
    with sqlite3.connect(db.with_name("runs.results.sqlite")) as con:
        (n,) = con.execute("SELECT COUNT(*) FROM mdap_subtask_results WHERE thread_id = 't1'").fetchone()
    return int(n)


async def test_killed_run_resumes_without_redoing_finished_subtasks(tmp_path: Path) -> None:
    db, log = tmp_path / "runs.sqlite", tmp_path / "calls.log"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = await asyncio.create_subprocess_exec(sys.executable, str(script), str(db), str(log), str(STEPS))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill it once 3 results are persisted (a busy machine is slow)
            if _persisted_or_0(db) >= 3:
                break
            await asyncio.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        await asyncio.wait_for(child.wait(), 30)
    assert child.returncode == -signal.SIGKILL
    done = _persisted(db)
    assert 3 <= done < STEPS  # killed mid-run, with finished subtasks persisted

    calls: list[str] = []
    result = await _pipeline(db, calls).run("count", thread_id="t1", resume=True)
    assert result.ok
    assert len(calls) == STEPS - done  # each finished subtask is not asked again
    assert calls[0] == f"task {done}"
    assert sum(r.cached for r in result.results.values()) == done
    assert result.report.cached_subtasks == done

    fresh: list[str] = []
    again = await _pipeline(tmp_path / "fresh.sqlite", fresh).run("count", thread_id="t1")
    assert again.answer == result.answer  # same answer as a run that was never killed
    assert len(fresh) == STEPS


async def test_resume_errors_are_clear(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    calls: list[str] = []
    with pytest.raises(CheckpointError, match="nothing to resume"):
        await _pipeline(db, calls).run("count", thread_id="nope", resume=True)
    await _pipeline(db, calls).run("count", thread_id="t1")
    with pytest.raises(CheckpointError, match="already finished"):
        await _pipeline(db, calls).run("count", thread_id="t1", resume=True)
    with pytest.raises(CheckpointError, match="ran another task"):
        await _pipeline(db, calls).run("other", thread_id="t1", resume=True)
    with pytest.raises(ConfigError, match="resume needs a checkpoint"):
        await _pipeline(db, calls).checkpoint(None).run("count", resume=True)


async def test_human_approval_pauses_then_resumes(tmp_path: Path) -> None:
    calls: list[str] = []
    pipeline = _pipeline(tmp_path / "a.sqlite", calls).approval("human")
    paused = await pipeline.run("count", thread_id="h")
    assert paused.status == "awaiting_approval"
    assert paused.plan is not None and len(paused.plan.subtasks) == STEPS
    assert calls == []
    with pytest.raises(ConfigError, match="waiting for plan approval"):
        await pipeline.run("count", thread_id="h", resume=True)
    edited = Plan(subtasks=paused.plan.subtasks[:2])
    done = await pipeline.run("count", thread_id="h", resume=True, approve=edited)
    assert done.ok
    assert calls == ["task 0", "task 1"]

    rejected = await pipeline.run("count", thread_id="h2")
    final = await pipeline.run("count", thread_id="h2", resume=True, approve=False)
    assert rejected.status == "awaiting_approval"
    assert final.status == "rejected"
    assert final.answer is None


async def test_approval_function_can_reject(tmp_path: Path) -> None:
    calls: list[str] = []
    seen: list[int] = []

    def approve(plan: Plan) -> bool:
        seen.append(len(plan.subtasks))
        return False

    result = await _pipeline(tmp_path / "f.sqlite", calls).approval(approve).run("count")
    assert result.status == "rejected"
    assert seen == [STEPS]
    assert calls == []
    assert chain(["x"], role="w").sinks() == ["step0"]
