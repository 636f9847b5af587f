"""One coordinator per pipeline run: a second process on the same thread of a checkpoint fails at once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from pipeline_helpers import Tracking, answer, instruction

from mdap.agents import Pipeline
from mdap.agents.compiled import thread_lock
from mdap.checkpoint import RunInUse
from mdap.planners import StaticPlanner, chain
from mdap.types import Message
from mdap.voters import FirstToAheadByK

STEPS = 6

# A slow run of thread "t1" (1 s a model call: it cannot finish while the test runs, even on a loaded machine)
# that the test finds in flight, then kills once it is executing (it logs each model call).
CHILD = textwrap.dedent(
    """
    import asyncio, json, re, sys
    from mdap.agents import Pipeline
    from mdap.models import SimulatedModel
    from mdap.planners import StaticPlanner, chain
    from mdap.voters import FirstToAheadByK

    def oracle(messages):
        ins = re.search(r"^Instruction: (.*)$", messages[-1]["content"], re.M).group(1)
        with open(sys.argv[3], "a") as log:
            log.write(ins + "\\n")
        return json.dumps({"answer": ins})

    pipeline = (
        Pipeline(model=SimulatedModel(oracle, latency_s=1.0))
        .planner(StaticPlanner(chain([f"task {i}" for i in range(int(sys.argv[2]))], role="w")))
        .role("w", voter=FirstToAheadByK(k=1, temperature=0.0, max_samples=2))
        .checkpoint(sys.argv[1])
    )
    asyncio.run(pipeline.run("count", thread_id="t1"))
    """
)


def _pipeline(db: Path, calls: list[str]) -> Pipeline:
    def oracle(messages: Sequence[Message]) -> str:
        calls.append(instruction(messages))
        return answer(instruction(messages))

    return (
        Pipeline(model=Tracking(oracle))
        .planner(StaticPlanner(chain([f"task {i}" for i in range(STEPS)], role="w")))
        .role("w", voter=FirstToAheadByK(k=1, temperature=0.0, max_samples=2))
        .checkpoint(db)
    )


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(3000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the child run did not start")


async def test_a_second_coordinator_of_a_thread_fails_naming_the_holder_then_resumes_after_it_dies(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.sqlite"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    lock = thread_lock(db, "t1")
    log = tmp_path / "child.log"
    child = await asyncio.create_subprocess_exec(sys.executable, str(script), str(db), str(STEPS), str(log))
    try:
        await _until(lambda: lock.exists() and lock.read_text().strip() == str(child.pid))
        calls: list[str] = []
        with pytest.raises(RunInUse, match=rf"pipeline run 't1' of checkpoint .* is in use by pid {child.pid} \("):
            await _pipeline(db, calls).run("count", thread_id="t1", resume=True)
        with pytest.raises(RunInUse, match=f"pid {child.pid}"):
            await _pipeline(db, calls).run("count", thread_id="t1")  # starting over is refused too
        assert calls == []  # refused before any planning or model call
        other = await _pipeline(db, calls).run("count", thread_id="t2")  # another thread of the file runs
        assert other.ok and len(calls) == STEPS
        await _until(log.exists)  # the child is executing: its plan is checkpointed, there is a run to resume
    finally:
        os.kill(child.pid, signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 30)
    calls.clear()
    result = await _pipeline(db, calls).run("count", thread_id="t1", resume=True)  # the dead holder's lock is gone
    assert result.ok and len(calls) <= STEPS


def test_thread_locks_are_plain_file_names() -> None:
    base = Path("/x/runs.sqlite")
    assert thread_lock(base, "task-1a2b") == Path("/x/runs.sqlite.locks/task-1a2b.lock")
    odd = thread_lock(base, "../../etc/passwd")
    assert odd.parent == Path("/x/runs.sqlite.locks") and odd.name.startswith("sha256-")
    assert thread_lock(base, ".hidden") != thread_lock(base, "hidden")
