"""One Usage value: + and - merge every counter, reports keep flat JSON keys, and a Microstep needs only
render, parse and apply; a pool session hears of every checkpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mdap import Chain, Executor, FirstToAheadByK, Microstep, RedFlag, SimulatedModel, Usage
from mdap.microstep import Chain as ChainType
from mdap.models import ChatModel
from mdap.pool import LocalPool, PoolSession
from mdap.report import ModuleStats, RunReport
from mdap.types import Message
from mdap.voters import Decision, Voter


def test_usage_adds_every_counter_and_merges_red_flags_by_kind() -> None:
    a = Usage(3, {"parse": 1}, 10, 5, 0.5, 1.0)
    b = Usage(2, {"parse": 2, "too_long": 1}, 4, 1, 0.25, 0.5)
    assert a + b == Usage(5, {"parse": 3, "too_long": 1}, 14, 6, 0.75, 1.5)
    assert a + Usage.zero() == a and Usage.zero() + a == a
    assert sum([a, b], Usage.zero()) == a + b
    assert a.red_flags == {"parse": 1}, "adding never changes an operand"
    assert (a + b) - a == b
    assert not Usage.zero() and a
    assert (a + b).red_flag_count == 4


def test_usage_round_trips_through_json_and_reads_flat_dicts() -> None:
    u = Usage(3, {"parse": 1}, 10, 5, 0.5, 1.0)
    assert Usage.from_json(json.loads(json.dumps(u.to_json()))) == u
    assert Usage.from_json({"samples": 2, "steps": 9}) == Usage(samples=2)


def test_reports_hold_one_usage_and_keep_their_flat_keys() -> None:
    usage = Usage(6, {"parse": 2}, 30, 12, 0.0, 0.1)
    report = RunReport(
        task="t",
        total_steps=3,
        steps=3,
        completed=True,
        wall_seconds=1.0,
        usage=usage,
        modules={"w": ModuleStats(steps=3, usage=usage)},
    )
    data = json.loads(report.model_dump_json())
    assert data["samples"] == 6 and data["red_flags"] == {"parse": 2} and data["completion_tokens"] == 30
    assert data["modules"]["w"]["samples"] == 6 and "usage" not in data
    assert RunReport.model_validate(data) == report
    assert RunReport.model_validate_json(report.model_dump_json()).usage == usage
    assert report.summary_dict()["samples_per_second"] == 6.0
    assert ModuleStats(steps=1, samples=2).usage == Usage(samples=2)  # flat keys build one too


class Count(Microstep[int, int]):
    """Counts up by one: only render, parse and apply are written."""

    fingerprint = "count:1"

    def render(self, state: int) -> list[Message]:
        return [{"role": "user", "content": f"after {state}"}]

    def parse(self, text: str) -> int:
        if not text.strip().isdigit():
            raise RedFlag("parse", "not a number")
        return int(text)

    def apply(self, state: int, answer: int) -> int:
        return answer


def _next(messages: Sequence[Message]) -> str:
    return str(int(messages[-1]["content"].split()[-1]) + 1)


async def test_a_microstep_of_render_parse_apply_checkpoints_traces_and_resumes(tmp_path: Path) -> None:
    model = SimulatedModel(_next, error_rate=0.1, seed=3)
    ckpt, trace = tmp_path / "c.json", tmp_path / "t.jsonl"
    run = Executor(model, FirstToAheadByK(k=2), checkpoint=ckpt, checkpoint_every=7, trace=trace)
    first = await run.run(Chain(Count(), 0, 20))
    assert first.ok and first.steps == 20
    assert json.loads(ckpt.read_text())["state"] == 20  # the default dump_state: the state itself
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [line["answer"] for line in lines] == list(range(1, 21))
    assert sum(line["samples"] for line in lines) == first.usage.samples
    again = await run.run(Chain(Count(), 0, 20), resume=True)
    assert again.resumed_from == 20 and again.usage.samples == first.usage.samples


class Recording:
    """A pool whose sessions vote in-process and record the checkpoints they hear of."""

    def __init__(self) -> None:
        self.heard: list[int] = []

    @asynccontextmanager
    async def session(
        self, chain: ChainType[Any, Any], voter: Voter, model: ChatModel | None, run_id: str
    ) -> AsyncIterator[PoolSession]:
        async with LocalPool().session(chain, voter, model, run_id) as inner:
            heard = self.heard

            class Session:
                def decide(self, step: int, messages: list[Message]) -> Any:
                    return inner.decide(step, messages)

                def checkpointed(self, next_step: int) -> None:
                    heard.append(next_step)

            yield Session()


async def test_a_pool_session_hears_of_every_checkpoint(tmp_path: Path) -> None:
    pool = Recording()
    model = SimulatedModel(_next, seed=1)
    report = await Executor(
        model, FirstToAheadByK(k=2), checkpoint=tmp_path / "c.json", checkpoint_every=5, pool=pool
    ).run(Chain(Count(), 0, 12))
    assert report.ok
    assert pool.heard == [5, 10, 12]


def test_a_decision_carries_its_usage() -> None:
    d = Decision(answer=1, votes=[3], usage=Usage(samples=3))
    assert d.usage.samples == 3 and Decision(answer=1, votes=[1]).usage == Usage.zero()
