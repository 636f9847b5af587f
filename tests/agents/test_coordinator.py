"""The coordinator: bounded parallel fan-out, retries, replans, failure policies, timeouts, caps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from pipeline_helpers import Tracking, answer, instruction, plan_json

from mdap.agents import Event, Pipeline
from mdap.errors import PlanError
from mdap.planners import LLMPlanner, Plan, RecursivePlanner, StaticPlanner, Subtask, fork_join
from mdap.types import Message
from mdap.voters import FirstToAheadByK

VOTER = FirstToAheadByK(k=1, temperature=0.0, max_samples=3)


def echo(messages: Sequence[Message]) -> str:
    return answer("did " + instruction(messages))


@pytest.mark.parametrize("cap", [1, 3, 5])
async def test_fan_out_overlaps_and_never_exceeds_the_cap(cap: int) -> None:
    model = Tracking(echo, latency_s=0.01)
    plan = fork_join([f"part {i}" for i in range(16)], worker="w", join="merge")
    pipeline = (
        Pipeline("fan", model=model)
        .planner(StaticPlanner(plan))
        .role("w", voter=VOTER)
        .policy(max_concurrency=cap)
        .checkpoint(None)
    )
    result = await pipeline.run("fan out")
    assert result.ok
    assert model.calls == 17
    assert model.max_in_flight == cap  # the cap is reached (real overlap) and never exceeded
    assert result.answer == "did merge"
    assert sorted(result.results) == sorted([f"part{i}" for i in range(16)] + ["join"])


async def test_dependents_see_compact_artifacts_of_their_dependencies() -> None:
    prompts: list[str] = []

    def oracle(messages: Sequence[Message]) -> str:
        prompts.append(messages[-1]["content"])
        return answer(("x" * 500) if instruction(messages) == "long" else "ok")

    plan = Plan(
        subtasks=[
            Subtask(id="a", instruction="long", role="w"),
            Subtask(id="b", instruction="use a", role="w", depends_on=["a"]),
        ]
    )
    pipeline = Pipeline(model=Tracking(oracle)).planner(StaticPlanner(plan)).role("w", voter=VOTER)
    result = await pipeline.policy(artifact_chars=50).checkpoint(None).run("t")
    assert result.ok
    last = prompts[-1]
    assert "Results of the subtasks this one depends on:\n[a] " + "x" * 50 + " ...[cut]" in last
    assert "x" * 51 not in last
    assert "long" not in last  # the dependency's instruction/transcript is not passed on


async def test_failing_subtask_is_retried_then_replanned_keeping_finished_work() -> None:
    calls: dict[str, int] = {}

    def oracle(messages: Sequence[Message]) -> str:
        text = messages[-1]["content"]
        if "Split the user's task" in messages[0]["content"]:
            if "A previous plan failed" in text:
                assert "impossible" in text and "VoteFailed" in text  # the failure context reaches the planner
                return plan_json(("s1", "gather", "w", []), ("s2", "do it the easy way", "w", ["s1"]))
            return plan_json(("s1", "gather", "w", []), ("s2", "do the impossible", "w", ["s1"]))
        ins = instruction(messages)
        calls[ins] = calls.get(ins, 0) + 1
        return "{not json" if ins == "do the impossible" else answer("did " + ins)

    events: list[Event] = []
    model = Tracking(oracle)
    pipeline = (
        Pipeline(model=model)
        .planner(LLMPlanner(model))
        .role("w", voter=VOTER)
        .policy(retries=2, backoff_s=0.0, max_replans=1)
        .checkpoint(None)
        .on("*", events.append)
    )
    result = await pipeline.run("t")
    assert result.status == "ok"
    assert result.answer == "did do it the easy way"
    assert result.replans == 1
    assert calls["do the impossible"] == 3 * 3  # 1 try + 2 retries, each vote drawing its cap of 3 samples
    assert calls["gather"] == 1  # kept across the replan, not redone
    assert result.results["s1"].cached
    kinds = [e.kind for e in events]
    assert kinds.count("subtask_retried") == 2
    assert kinds.count("replanned") == 1
    assert kinds.index("replanned") > max(i for i, k in enumerate(kinds) if k == "subtask_retried")
    assert result.report.modules["planner"].steps == 2
    assert result.report.usage.red_flags["parse"] == 9


def _failing_plan() -> Plan:
    return Plan(
        subtasks=[
            Subtask(id="a", instruction="fail", role="w"),
            Subtask(id="b", instruction="after a", role="w", depends_on=["a"]),
            Subtask(id="c", instruction="independent", role="w"),
        ]
    )


async def test_failure_policy_propagate_runs_dependents_with_the_failure_as_context() -> None:
    seen: list[str] = []

    def oracle(messages: Sequence[Message]) -> str:
        seen.append(messages[-1]["content"])
        return "{bad" if instruction(messages) == "fail" else answer("done")

    pipeline = Pipeline(model=Tracking(oracle)).planner(StaticPlanner(_failing_plan())).role("w", voter=VOTER)
    result = await pipeline.policy(retries=0, max_replans=0, on_failure="propagate").checkpoint(None).run("t")
    assert result.status == "partial"
    assert result.failed == ["a"]
    assert result.results["b"].ok
    assert any("[a] FAILED: VoteFailed" in p for p in seen)
    assert result.answer == "[b] done\n[c] done"


async def test_failure_policy_halt_stops_the_run() -> None:
    def oracle(messages: Sequence[Message]) -> str:
        return "{bad" if instruction(messages) == "fail" else answer("done")

    pipeline = (
        Pipeline(model=Tracking(oracle))
        .planner(StaticPlanner(_failing_plan()))
        .role("w", voter=VOTER)
        .policy(retries=0, max_replans=0, on_failure="halt", max_concurrency=1)
        .checkpoint(None)
    )
    result = await pipeline.run("t")
    assert result.status == "failed"
    assert result.answer is None
    assert "b" not in result.results
    assert "a: VoteFailed" in (result.error or "")


async def test_subtask_timeout_fails_the_attempt() -> None:
    pipeline = (
        Pipeline(model=Tracking(echo, latency_s=1.0))
        .planner(StaticPlanner(fork_join(["slow"], worker="w")))
        .role("w", voter=VOTER)
        .policy(subtask_timeout_s=0.02, retries=1, backoff_s=0.0, max_replans=0)
        .checkpoint(None)
    )
    result = await pipeline.run("t")
    assert result.status == "failed"
    assert result.results["part0"].attempts == 2
    assert "timed out after 0.02s" in (result.results["part0"].error or "")


async def test_pending_cap_refuses_task_explosion() -> None:
    big = fork_join([f"p{i}" for i in range(30)], worker="w")
    pipeline = Pipeline(model=Tracking(echo)).planner(StaticPlanner(big)).role("w", voter=VOTER)
    with pytest.raises(PlanError, match="more than the cap of 10"):
        await pipeline.policy(max_pending=10).checkpoint(None).run("t")


async def test_recursive_planner_splits_a_too_big_subtask() -> None:
    def oracle(messages: Sequence[Message]) -> str:
        ins = instruction(messages)
        if ins == "write the book":
            return json.dumps({"too_big": "a whole book"})
        return answer("wrote " + ins)

    def plan_for(task: object) -> Plan:
        text = getattr(task, "text", "")
        if text == "write the book":
            return fork_join(["chapter 1", "chapter 2"], worker="w", join="bind the chapters")
        return Plan(subtasks=[Subtask(id="book", instruction="write the book", role="w")])

    events: list[Event] = []
    pipeline = (
        Pipeline(model=Tracking(oracle))
        .planner(RecursivePlanner(StaticPlanner(plan_for), max_depth=1))
        .role("w", voter=VOTER)
        .checkpoint(None)
        .on("subtask_expanded", events.append)
    )
    result = await pipeline.run("a book")
    assert result.ok
    assert result.answer == "wrote bind the chapters"
    assert result.results["book"].children == ["book/part0", "book/part1", "book/join"]
    assert events[0].data["id"] == "book"


async def test_explosion_guard_applies_to_splits() -> None:
    def oracle(messages: Sequence[Message]) -> str:
        return json.dumps({"too_big": "yes"}) if instruction(messages) == "big" else answer("ok")

    def plan_for(task: object) -> Plan:
        if getattr(task, "text", "") == "big":
            return fork_join([f"piece {i}" for i in range(8)], worker="w")
        return Plan(subtasks=[Subtask(id="top", instruction="big", role="w")])

    pipeline = (
        Pipeline(model=Tracking(oracle))
        .planner(RecursivePlanner(StaticPlanner(plan_for)))
        .role("w", voter=VOTER)
        .policy(max_pending=5, retries=0, max_replans=0)
        .checkpoint(None)
    )
    result = await pipeline.run("t")
    assert result.status == "failed"
    assert "task explosion guard" in (result.results["top"].error or "")


def chain_of_three(task: object) -> Plan:
    """Every task, split or not, is planned as a chain a -> b -> c (few subtasks pending at any time)."""
    text = getattr(task, "text", "")
    return Plan(
        subtasks=[
            Subtask(id="a", instruction=f"{text} a", role="w"),
            Subtask(id="b", instruction=f"{text} b", role="w", depends_on=["a"]),
            Subtask(id="c", instruction=f"{text} c", role="w", depends_on=["b"]),
        ]
    )


async def test_explosion_guard_bounds_chain_shaped_splits_too() -> None:
    """A worker that always answers too_big, chain-shaped splits 8 levels deep: 3 ** 8 leaves without a bound
    on all the subtasks created (the pending count stays small in a chain)."""
    model = Tracking(lambda m: json.dumps({"too_big": "yes"}))
    pipeline = (
        Pipeline(model=model)
        .planner(RecursivePlanner(StaticPlanner(chain_of_three), max_depth=8))
        .role("w", voter=VOTER)
        .policy(max_pending=50, retries=0, max_replans=0)
        .checkpoint(None)
    )
    result = await asyncio.wait_for(pipeline.run("t"), 30)
    assert result.status == "failed"
    assert len(result.results) <= 50
    assert model.calls <= 50 * VOTER.max_samples
    errors = [r.error or "" for r in result.results.values()]
    assert any("task explosion guard" in e and "above max_pending=50" in e for e in errors)


async def test_the_depth_limit_holds_for_chain_shaped_splits() -> None:
    model = Tracking(lambda m: json.dumps({"too_big": "yes"}))
    pipeline = (
        Pipeline(model=model)
        .planner(RecursivePlanner(StaticPlanner(chain_of_three), max_depth=2))
        .role("w", voter=VOTER)
        .policy(retries=0, max_replans=0)
        .checkpoint(None)
    )
    result = await asyncio.wait_for(pipeline.run("t"), 30)
    assert result.status == "failed"
    assert len(result.results) == 3 + 9 + 27, "three levels: the plan and two levels of splits"
    assert max(sid.count("/") for sid in result.results) == 2
    leaf = result.results["a/a/a"]
    assert leaf.status == "failed" and not leaf.children, "a subtask at the limit is not offered too_big"
    assert result.results["a/a"].children == ["a/a/a", "a/a/b", "a/a/c"]


async def test_plan_error_from_the_pipeline_after_reasks(tmp_path: Path) -> None:
    cyclic = plan_json(("a", "x", "w", ["b"]), ("b", "y", "w", ["a"]))
    model = Tracking(lambda m: cyclic)
    pipeline = Pipeline(model=model).planner(LLMPlanner(model, max_attempts=2)).role("w").checkpoint(tmp_path / "c.db")
    with pytest.raises(PlanError, match="no valid plan after 2 replies"):
        await pipeline.run("t")
    assert model.calls == 2
