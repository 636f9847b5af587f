"""OpenTelemetry spans of a pipeline run: run -> subtask -> vote -> sample, with GenAI and mdap attributes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mdap.agents import Pipeline
from mdap.agents.telemetry import instrument
from mdap.models import ScriptedModel
from mdap.planners import StaticPlanner, chain
from mdap.voters import FirstToAheadByK


def _answer(text: str) -> str:
    return json.dumps({"answer": text})


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_a_pipeline_run_is_a_tree_of_run_subtask_vote_and_sample_spans() -> None:
    # step0, k=2: a truncated sample (red flag) and A, then B (a losing answer), then A, A:
    # decided A with votes [3, 1] in 5 samples
    script: list[str | tuple[str, str, int]] = [
        ("cut", "length", 9),
        _answer("A"),
        _answer("B"),
        _answer("A"),
        _answer("A"),
        _answer("C"),
        _answer("C"),
    ]
    model = ScriptedModel(script)
    pipeline = (
        Pipeline("traced", model=model)
        .planner(StaticPlanner(chain(["first", "second"], role="w")))
        .role("w", voter=FirstToAheadByK(k=2, temperature=0.0, max_samples=10))
        .checkpoint(None)
        .compile()
    )
    provider, exporter = _provider()
    instrument(pipeline, tracer_provider=provider)

    result = await pipeline.run("two steps", thread_id="t-otel")

    assert result.ok and result.answer == "C"
    spans = exporter.get_finished_spans()
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name.split(" ")[0], []).append(span)
    assert {k: len(v) for k, v in by_name.items()} == {"mdap.run": 1, "mdap.subtask": 2, "mdap.vote": 2, "chat": 7}

    (run,) = by_name["mdap.run"]
    assert run.parent is None
    assert run.attributes is not None
    assert run.attributes["mdap.thread_id"] == "t-otel"
    assert run.attributes["mdap.status"] == "ok"
    assert "plan_created" in [e.name for e in run.events]

    subtasks = {s.attributes["mdap.subtask.id"]: s for s in by_name["mdap.subtask"] if s.attributes}
    assert set(subtasks) == {"step0", "step1"}
    for s in subtasks.values():
        assert s.parent is not None and s.parent.span_id == run.context.span_id
        assert s.attributes is not None and s.attributes["mdap.subtask.role"] == "w"

    votes = {v.parent.span_id: v for v in by_name["mdap.vote"] if v.parent is not None}
    first = votes[subtasks["step0"].context.span_id]
    assert first.attributes is not None
    assert first.attributes["mdap.k"] == 2
    assert first.attributes["mdap.samples"] == 5
    assert tuple(first.attributes["mdap.votes"]) == (3, 1)  # type: ignore[arg-type]
    assert first.attributes["mdap.red_flags"] == 1
    assert first.attributes["mdap.decided_answer"] == "A"
    second = votes[subtasks["step1"].context.span_id]
    assert second.attributes is not None and second.attributes["mdap.samples"] == 2

    samples = [s for s in by_name["chat"] if s.parent is not None and s.parent.span_id == first.context.span_id]
    assert len(samples) == 5
    for s in samples:
        a = s.attributes
        assert a is not None
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.request.model"] == "ScriptedModel"
        assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "mdap"
        assert a["gen_ai.request.temperature"] == 0.0
        assert "gen_ai.usage.input_tokens" in a and "gen_ai.usage.output_tokens" in a
        assert tuple(a["gen_ai.response.finish_reasons"]) in {("stop",), ("length",)}  # type: ignore[arg-type]
    flagged = [s for s in samples if s.attributes and "mdap.red_flag" in s.attributes]
    assert len(flagged) == 1
    assert all(s.context.trace_id == run.context.trace_id for s in spans)


async def test_without_listeners_no_vote_is_recorded() -> None:
    from mdap.voters import Ballot
    from mdap.voters.observe import current_observer

    assert current_observer() is None
    assert Ballot(3)._record is None


def test_a_chain_is_a_run_span_over_its_votes_and_their_samples(tmp_path: Path) -> None:
    from mdap.agents.telemetry import trace_chain
    from mdap.evals.hanoi import HanoiConfig, run_hanoi

    provider, exporter = _provider()
    cfg = HanoiConfig.build(disks=3, model="simulated", k=2, run_dir=tmp_path / "run", progress=False)
    with trace_chain("hanoi 3", provider, model="simulated", disks=3):
        report = asyncio.run(run_hanoi(cfg))
    assert report.ok
    spans = exporter.get_finished_spans()
    (run,) = [s for s in spans if s.name == "mdap.run hanoi 3"]
    votes = [s for s in spans if s.name == "mdap.vote"]
    samples = [s for s in spans if s.name == "chat simulated"]
    assert len(votes) == 7  # one per move
    assert all(v.parent is not None and v.parent.span_id == run.context.span_id for v in votes)
    assert len(samples) == sum(int(v.attributes["mdap.samples"]) for v in votes if v.attributes)
    assert {s.parent.span_id for s in samples if s.parent} == {v.context.span_id for v in votes}
