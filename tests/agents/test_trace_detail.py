"""detail="full" traces: every sample's text, the losing answers, tool inputs and outputs; "counts" stays lean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mdap.agents import Pipeline, Tool, WorkerRole
from mdap.errors import ConfigError
from mdap.models import ScriptedModel
from mdap.planners import StaticPlanner, fork_join
from mdap.voters import FirstToAheadByK

SECRET = "sk-abcdefghijklmnopqrstuvwxyz0123456789"


def _python() -> Tool:
    async def fn(args: dict[str, Any]) -> str:
        return f"ran {args['code']!r}; token {SECRET}"

    schema = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}
    return Tool("python", "Run Python code.", schema, fn)


def _pipeline(trace: Path, detail: Any) -> Pipeline:
    call = json.dumps({"tool_calls": [{"name": "python", "arguments": {"code": "print(1 + 2)"}}]})
    # the tool round: two equal calls (k=2); the answer: "3", "4" (loses), "3", "3"
    script = [call, call, json.dumps({"answer": "3"}), json.dumps({"answer": "4"})] + [json.dumps({"answer": "3"})] * 2
    voter = FirstToAheadByK(k=2, temperature=0.0, max_samples=10)
    role = WorkerRole("w", tools=[_python()], max_tool_rounds=1, voter=voter)
    return (
        Pipeline("detail", model=ScriptedModel(script))
        .planner(StaticPlanner(fork_join(["add 1 and 2"], worker="w")))
        .role(role)
        .checkpoint(None)
        .trace(trace, detail=detail)
    )


async def test_a_full_trace_holds_sample_texts_losing_answers_and_tool_calls(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    result = await _pipeline(trace, "full").run("t")
    assert result.ok and result.answer == "3"
    text = trace.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    votes = [line for line in lines if line["kind"] == "vote_decided"]
    assert len(votes) == 2
    tools_vote, answer_vote = votes
    assert len(tools_vote["sample_texts"]) == 2 and "print(1 + 2)" in tools_vote["sample_texts"][0]["text"]
    assert [s["answer"] for s in answer_vote["sample_texts"]] == ["3", "4", "3", "3"]
    assert answer_vote["losing"] == [{"answer": "4", "votes": 1}]
    (tool,) = [line for line in lines if line["kind"] == "tool_called"]
    assert tool["name"] == "python" and tool["input"] == {"code": "print(1 + 2)"}
    assert tool["output"].startswith("ran 'print(1 + 2)'")
    assert SECRET not in text  # through the redaction every trace line takes


async def test_a_counts_trace_keeps_todays_lines(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    assert (await _pipeline(trace, "counts").run("t")).ok
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert "tool_called" not in {line["kind"] for line in lines}
    assert all("sample_texts" not in line and "losing" not in line for line in lines)


def test_an_unknown_detail_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="counts' or 'full'"):
        _pipeline(tmp_path / "t.jsonl", "everything")
