"""Executor.run_many: independent chains at once through one model, one combined report, a checkpoint and trace
per run, resumable."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from mdap import ConfigError, Executor, FirstToAheadByK, Sample
from mdap.evals.hanoi import hanoi_chain, simulated_hanoi_model
from mdap.executor import run_path
from mdap.types import Message


class InFlight:
    """Wraps a model and records the most requests it had in flight at once."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.now = self.most = 0

    async def sample(self, messages: Sequence[Message], **kw: object) -> list[Sample]:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.001)
            return await self.inner.sample(messages, **kw)  # type: ignore[attr-defined,no-any-return]
        finally:
            self.now -= 1


async def test_chains_run_at_once_into_one_summed_report(tmp_path: Path) -> None:
    model = InFlight(simulated_hanoi_model(error_rate=0.05, seed=2))
    trace, ckpt = tmp_path / "trace.jsonl", tmp_path / "ckpt.json"
    executor = Executor(model, FirstToAheadByK(k=3), trace=trace, checkpoint=ckpt)
    report = await executor.run_many([hanoi_chain(5), hanoi_chain(4), hanoi_chain(5)])
    assert report.ok and report.steps == report.total_steps == 31 + 15 + 31
    assert model.most >= 3  # the three chains were in flight together, not one after another
    assert [m.steps for m in report.modules.values()] == [31, 15, 31]
    assert report.usage.samples == sum(m.usage.samples for m in report.modules.values()) >= 3 * report.steps
    for i, steps in enumerate([31, 15, 31]):
        assert len(run_path(trace, i).read_text().splitlines()) == steps
        assert json.loads(run_path(ckpt, i).read_text())["next_step"] == steps
    again = await Executor(model, FirstToAheadByK(k=3), trace=trace, checkpoint=ckpt).run_many(
        [hanoi_chain(5), hanoi_chain(4), hanoi_chain(5)], resume=True
    )
    # resumed at the end: nothing redone
    assert again.steps == report.steps and again.usage.samples == report.usage.samples


async def test_a_failed_run_is_named_in_the_combined_report() -> None:
    good = hanoi_chain(3)
    voter = FirstToAheadByK(k=2, max_samples=2)
    model = simulated_hanoi_model(error_rate=0.5, correlation=1.0, seed=4)
    report = await Executor(model, voter).run_many([good, hanoi_chain(6)])
    assert not report.completed
    assert report.failure is not None and report.failure.startswith("run ")


async def test_no_chains_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="at least one chain"):
        await Executor(simulated_hanoi_model(), FirstToAheadByK(k=1)).run_many([])
