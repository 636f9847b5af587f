"""Workers and tools: path escapes refused, sandboxed python/shell, the voted tool loop, events and trace."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from pipeline_helpers import Tracking, answer, instruction

from mdap.agents import (
    EVENT_KINDS,
    Event,
    Limits,
    Pipeline,
    Tool,
    WorkerRole,
    Workspace,
    builtin_tools,
    file_tools,
    python_tool,
    shell_tool,
)
from mdap.errors import ConfigError, PlanError, ToolError
from mdap.planners import StaticPlanner, fork_join
from mdap.types import Message
from mdap.voters import FirstToAheadByK, Majority

VOTER = FirstToAheadByK(k=1, temperature=0.0, max_samples=3)


def _tools(ws: Workspace) -> dict[str, Tool]:
    return {t.name: t for t in file_tools(ws)}


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "a/../../outside.txt", "link/secret.txt"])
async def test_file_tools_refuse_path_escapes(tmp_path: Path, path: str) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "secret.txt").write_text("secret")
    ws = Workspace(tmp_path / "ws")
    os.symlink(tmp_path / "other", ws.root / "link")
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.resolve(path)
    tools = _tools(ws)
    read = await tools["read_file"].call({"path": path})
    wrote = await tools["write_file"].call({"path": path, "content": "pwned"})
    assert read.startswith("error: refused")
    assert wrote.startswith("error: refused")
    assert (tmp_path / "outside.txt").read_text() == "secret"
    assert (tmp_path / "other" / "secret.txt").read_text() == "secret"


async def test_file_tools_work_inside_the_workspace(tmp_path: Path) -> None:
    tools = _tools(Workspace(tmp_path))
    assert await tools["write_file"].call({"path": "d/notes.txt", "content": "alpha\nbeta\n"}) == (
        "wrote 11 characters to d/notes.txt"
    )
    assert await tools["read_file"].call({"path": "d/notes.txt"}) == "alpha\nbeta\n"
    assert await tools["search_files"].call({"pattern": "^be"}) == "d/notes.txt:2: beta"
    assert await tools["list_files"].call({"path": "d"}) == "d/notes.txt"
    assert await tools["read_file"].call({}) == "error: missing arguments: path"


async def test_python_tool_evaluates_runs_and_is_limited(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    py = python_tool(ws, Limits(timeout_s=30.0, memory_mb=256))
    assert await py.call({"code": "6 * 7"}) == "42\n"
    assert await py.call({"code": "import os\nprint(os.getcwd())"}) == f"{ws.root}\n"
    assert "SECRET_TOKEN" not in await py.call({"code": "import os\nprint(dict(os.environ))"})
    looping = python_tool(ws, Limits(timeout_s=1.0))
    assert (await looping.call({"code": "while True: pass"})).startswith("error: timed out after 1s")
    out = await py.call({"code": "x = bytearray(1024 * 1024 * 1024)"})
    assert out.startswith("exit code 1") and "MemoryError" in out


async def test_shell_tool_runs_in_the_workspace_with_a_timeout(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    sh = shell_tool(ws, Limits(timeout_s=30.0))
    assert await sh.call({"command": "pwd"}) == f"exit code 0\n{ws.root}\n"
    assert await sh.call({"command": "exit 3"}) == "exit code 3\n"
    quick = shell_tool(ws, Limits(timeout_s=0.5))
    assert (await quick.call({"command": "sleep 5"})).startswith("error: timed out after 0.5s")


async def test_worker_votes_tool_calls_and_answers_with_their_result(tmp_path: Path) -> None:
    def oracle(messages: Sequence[Message]) -> str:
        last = messages[-1]["content"]
        if last.startswith("Tool results:"):
            result = json.loads(last.splitlines()[1])
            assert result["tool_call_id"] == "call_0_0" and result["name"] == "python"
            return answer("the product is " + result["content"].strip())
        args = json.dumps({"code": "6 * 7"})
        return json.dumps(
            {"tool_calls": [{"id": "x", "type": "function", "function": {"name": "python", "arguments": args}}]}
        )

    model = Tracking(oracle)
    pipeline = (
        Pipeline(model=model)
        .planner(StaticPlanner(fork_join(["multiply"], worker="calc")))
        .role("calc", tools=builtin_tools(tmp_path), voter=Majority(n=3, temperature=0.5))
        .checkpoint(None)
    )
    result = await pipeline.run("t")
    assert result.answer == "the product is 42"
    r = result.results["part0"]
    assert r.tool_calls == 1
    assert r.votes == 2
    assert r.usage.samples == 6
    assert model.calls == 2  # one request of n=3 per vote


async def test_worker_refuses_escapes_through_the_tool_loop(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("top secret")
    seen: list[str] = []

    def oracle(messages: Sequence[Message]) -> str:
        last = messages[-1]["content"]
        if last.startswith("Tool results:"):
            seen.append(last)
            return answer("could not read it")
        call = {"name": "read_file", "arguments": json.dumps({"path": "../secret.txt"})}
        return json.dumps({"tool_calls": [{"id": "1", "type": "function", "function": call}]})

    ws = tmp_path / "ws"
    pipeline = (
        Pipeline(model=Tracking(oracle))
        .planner(StaticPlanner(fork_join(["read the secret"], worker="w")))
        .role("w", tools=file_tools(Workspace(ws)), voter=VOTER)
        .checkpoint(None)
    )
    result = await pipeline.run("t")
    assert result.answer == "could not read it"
    assert "refused" in seen[0] and "top secret" not in seen[0]


async def test_tool_loop_is_bounded() -> None:
    def oracle(messages: Sequence[Message]) -> str:
        if "no more tool calls" in messages[-1]["content"]:
            return answer("gave up")
        return json.dumps({"tool_calls": [{"type": "function", "function": {"name": "noop", "arguments": "{}"}}]})

    async def noop(args: dict[str, object]) -> str:
        return "nothing"

    tool = Tool("noop", "does nothing", {"type": "object", "properties": {}}, noop)
    model = Tracking(oracle)
    pipeline = (
        Pipeline(model=model)
        .planner(StaticPlanner(fork_join(["loop"], worker="w")))
        .role(WorkerRole("w", tools=[tool], voter=VOTER, max_tool_rounds=3))
        .checkpoint(None)
    )
    result = await pipeline.run("t")
    assert result.answer == "gave up"
    assert result.results["part0"].tool_calls == 3
    assert model.calls == 4


async def test_events_and_jsonl_trace(tmp_path: Path) -> None:
    events: list[Event] = []
    trace = tmp_path / "trace.jsonl"
    pipeline = (
        Pipeline(model=Tracking(lambda m: answer("did " + instruction(m))))
        .planner(StaticPlanner(fork_join(["a", "b"], worker="w", join="c")))
        .role("w", voter=VOTER)
        .checkpoint(None)
        .trace(trace)
        .on("subtask_finished", events.append)
    )
    result = await pipeline.run("t")
    assert result.ok
    assert [e.data["id"] for e in events][-1] == "join"
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    kinds = [line["kind"] for line in lines]
    assert kinds[0] == "plan_created" and kinds[-1] == "run_finished"
    assert kinds.count("subtask_started") == kinds.count("subtask_finished") == kinds.count("vote_decided") == 3
    assert set(kinds) <= set(EVENT_KINDS)
    with pytest.raises(ConfigError, match="unknown event kind"):
        pipeline.on("nope", events.append)


def test_compile_validates_roles_models_tools() -> None:
    with pytest.raises(ConfigError, match="at least one role"):
        Pipeline(model=Tracking(str)).compile()
    with pytest.raises(ConfigError, match="has no model"):
        Pipeline().planner(StaticPlanner(fork_join(["a"], worker="w"))).role("w").compile()
    with pytest.raises(ConfigError, match="must be a ChatModel"):
        Pipeline().role("w", model="gpt").compile()  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tools must be"):
        Pipeline(model=Tracking(str)).role("w", tools=["python"]).compile()
    with pytest.raises(ConfigError, match="defined twice"):
        Pipeline().role("w").role("w")
    with pytest.raises(ConfigError, match="role name"):
        WorkerRole("1bad")
    with pytest.raises(ConfigError, match="approval='human'"):
        Pipeline(model=Tracking(str)).role("w").approval("human").checkpoint(None).compile()
    with pytest.raises(PlanError, match=r"unknown roles in part0 \(role 'x'\)"):
        Pipeline(model=Tracking(str)).planner(StaticPlanner(fork_join(["a"], worker="x"))).role("w").compile()
    compiled = Pipeline(model=Tracking(str)).role("w", adapter="lora-w").compile()
    assert compiled.workers["w"].voter.adapter == "lora-w"  # type: ignore[attr-defined]
