"""Tool timeouts hold for plain (synchronous) tool functions too: they run in a thread, the loop keeps going."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from pipeline_helpers import Tracking, answer, instruction

from mdap.agents import Pipeline, Tool
from mdap.agents import tools as tools_module
from mdap.errors import ConfigError, ToolError
from mdap.planners import StaticPlanner, fork_join
from mdap.types import Message
from mdap.voters import FirstToAheadByK

VOTER = FirstToAheadByK(k=1, temperature=0.0, max_samples=3)
NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}


def blocking(release: threading.Event) -> Any:
    def fn(args: dict[str, Any]) -> str:
        release.wait(30)
        return "late"

    return fn


async def test_a_blocking_sync_tool_times_out_with_a_tool_error_and_never_blocks_the_loop() -> None:
    release = threading.Event()
    tool = Tool("slow", "blocks", NO_ARGS, blocking(release), timeout_s=0.3)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    t0 = time.monotonic()
    out = await tool.call({})
    took = time.monotonic() - t0
    t.cancel()
    release.set()
    assert out == "error: tool slow (synchronous function) timed out after 0.3s"
    assert 0.25 < took < 2.0
    assert ticks >= 10, "the event loop kept running while the tool blocked"


async def test_a_sync_tool_without_a_timeout_gets_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools_module, "SYNC_TOOL_TIMEOUT_S", 0.2)
    release = threading.Event()
    out = await Tool("slow", "blocks", NO_ARGS, blocking(release)).call({})
    release.set()
    assert out == "error: tool slow (synchronous function) timed out after 0.2s"


async def test_sync_tools_return_refuse_and_raise_like_async_ones() -> None:
    def ok(args: dict[str, Any]) -> str:
        return f"got {args['x']} on {threading.current_thread().name}"

    def refuse(args: dict[str, Any]) -> str:
        raise ToolError("not allowed")

    def buggy(args: dict[str, Any]) -> str:
        raise KeyError("oops")

    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    got = await Tool("ok", "", schema, ok).call({"x": 3})
    assert got.startswith("got 3 on mdap-tool-ok"), "it ran in a thread of its own"
    assert await Tool("ok", "", schema, ok).call({}) == "error: missing arguments: x"
    assert await Tool("refuse", "", NO_ARGS, refuse).call({}) == "error: not allowed"
    with pytest.raises(KeyError, match="oops"):
        await Tool("buggy", "", NO_ARGS, buggy).call({})
    assert await Tool("lam", "", NO_ARGS, lambda a: 42).call({}) == "42"


async def test_an_async_tool_with_a_timeout_is_cut_and_one_without_is_not() -> None:
    async def sleepy(args: dict[str, Any]) -> str:
        await asyncio.sleep(0.5)
        return "woke"

    cut = await Tool("s", "", NO_ARGS, sleepy, timeout_s=0.1).call({})
    assert cut == "error: tool s (function) timed out after 0.1s"
    assert await Tool("s", "", NO_ARGS, sleepy).call({}) == "woke"
    assert await Tool("s", "", NO_ARGS, lambda a: sleepy(a), timeout_s=0.1).call({}) == (
        "error: tool s (synchronous function) timed out after 0.1s"
    ), "a plain callable returning a coroutine is bounded too"
    with pytest.raises(ConfigError, match="timeout_s must be > 0"):
        Tool("s", "", NO_ARGS, sleepy, timeout_s=0)


async def test_a_worker_whose_sync_tool_blocks_gets_the_error_and_answers() -> None:
    release = threading.Event()
    seen: list[str] = []

    def oracle(messages: Sequence[Message]) -> str:
        last = messages[-1]["content"]
        if last.startswith("Tool results:"):
            seen.append(last)
            return answer("the tool was too slow")
        assert instruction(messages) == "look it up"
        call = {"name": "lookup", "arguments": "{}"}
        return json.dumps({"tool_calls": [{"id": "1", "type": "function", "function": call}]})

    pipeline = (
        Pipeline(model=Tracking(oracle))
        .planner(StaticPlanner(fork_join(["look it up"], worker="w")))
        .role("w", tools=[Tool("lookup", "looks up", NO_ARGS, blocking(release), timeout_s=0.3)], voter=VOTER)
        .policy(subtask_timeout_s=20, retries=0)
        .checkpoint(None)
    )
    t0 = time.monotonic()
    result = await asyncio.wait_for(pipeline.run("t"), 10)
    release.set()
    assert result.answer == "the tool was too slow"
    assert "timed out after 0.3s" in seen[0]
    assert time.monotonic() - t0 < 5


async def test_the_subtask_timeout_holds_while_a_sync_tool_blocks() -> None:
    release = threading.Event()

    def oracle(messages: Sequence[Message]) -> str:
        call = {"name": "lookup", "arguments": "{}"}
        return json.dumps({"tool_calls": [{"id": "1", "type": "function", "function": call}]})

    pipeline = (
        Pipeline(model=Tracking(oracle))
        .planner(StaticPlanner(fork_join(["look it up"], worker="w")))
        .role("w", tools=[Tool("lookup", "looks up", NO_ARGS, blocking(release), timeout_s=25)], voter=VOTER)
        .policy(subtask_timeout_s=0.5, retries=0, max_replans=0)
        .checkpoint(None)
    )
    t0 = time.monotonic()
    result = await asyncio.wait_for(pipeline.run("t"), 10)
    release.set()
    assert result.status == "failed"
    assert "timed out after 0.5s" in (result.results["part0"].error or "")
    assert time.monotonic() - t0 < 5
