"""LLMPlanner: valid plans pass, invalid ones are re-asked with the error, then PlanError."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from mdap.errors import PlanError
from mdap.models import ScriptedModel, SimulatedModel
from mdap.planners import (
    LLMPlanner,
    Plan,
    RecursivePlanner,
    StaticPlanner,
    Subtask,
    Task,
    canonical_key,
    chain,
    fork_join,
    parse_plan,
    validate_plan,
)
from mdap.types import Message
from mdap.voters import FirstToAheadByK

ROLES = {"writer": "writes text", "coder": "writes code"}


def _plan(*subtasks: tuple[str, str, list[str]]) -> str:
    return json.dumps(
        {"subtasks": [{"id": i, "instruction": f"do {i}", "role": r, "depends_on": d} for i, r, d in subtasks]}
    )


CYCLIC = _plan(("a", "writer", ["b"]), ("b", "writer", ["a"]))
DANGLING = _plan(("a", "writer", ["zzz"]))
GOOD = _plan(("a", "writer", []), ("b", "coder", ["a"]))


class Scripted:
    """Replies in order and records every prompt."""

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[list[Message]] = []

    def __call__(self, messages: Sequence[Message]) -> str:
        self.prompts.append(list(messages))
        return self.replies[min(len(self.prompts) - 1, len(self.replies) - 1)]


async def test_valid_plan_passes_first_time() -> None:
    oracle = Scripted([GOOD])
    plan = await LLMPlanner(SimulatedModel(oracle)).plan(Task(text="write a poem"), ROLES)
    assert [s.id for s in plan.subtasks] == ["a", "b"]
    assert plan.subtasks[1].depends_on == ["a"]
    assert len(oracle.prompts) == 1
    assert "write a poem" in oracle.prompts[0][-1]["content"]
    assert "- coder: writes code" in oracle.prompts[0][0]["content"]


async def test_cyclic_then_dangling_plan_is_reasked_with_the_error_then_plan_error() -> None:
    oracle = Scripted([CYCLIC, DANGLING, CYCLIC])
    planner = LLMPlanner(SimulatedModel(oracle), max_attempts=3)
    with pytest.raises(PlanError, match="no valid plan after 3 replies") as info:
        await planner.plan(Task(text="t"), ROLES)
    assert "cycle" in str(info.value)
    assert "dangling" in str(info.value)
    assert len(oracle.prompts) == 3
    second = oracle.prompts[1]
    assert second[-2] == {"role": "assistant", "content": CYCLIC}
    assert "cycle: a -> b -> a" in second[-1]["content"] or "cycle: b -> a -> b" in second[-1]["content"]
    assert "'zzz', which is not a subtask id" in oracle.prompts[2][-1]["content"]


async def test_invalid_then_valid_plan_recovers() -> None:
    oracle = Scripted(["not json at all", GOOD])
    plan = await LLMPlanner(SimulatedModel(oracle)).plan(Task(text="t"), ROLES)
    assert len(plan.subtasks) == 2
    assert "no JSON found" in oracle.prompts[1][-1]["content"]


async def test_unknown_role_and_duplicate_ids_are_named() -> None:
    with pytest.raises(PlanError, match=r"unknown roles in a \(role 'painter'\)"):
        parse_plan(_plan(("a", "painter", [])), ROLES)
    with pytest.raises(PlanError, match="duplicate subtask ids: a"):
        parse_plan(_plan(("a", "writer", []), ("a", "writer", [])), ROLES)
    with pytest.raises(PlanError, match="a depends on itself"):
        parse_plan(_plan(("a", "writer", ["a"])), ROLES)
    with pytest.raises(PlanError, match="more than the cap of 1"):
        parse_plan(GOOD, ROLES, max_subtasks=1)
    with pytest.raises(PlanError, match="schema"):
        parse_plan('{"subtasks": [{"id": "a"}]}', ROLES)


async def test_plan_vote_counts_renamed_plans_as_one() -> None:
    def same_dag(a: str, b: str, *, instr: str = "") -> str:
        return json.dumps(
            {
                "subtasks": [
                    {"id": a, "instruction": "draft", "role": "writer", "depends_on": []},
                    {"id": b, "instruction": "check" + instr, "role": "coder", "depends_on": [a]},
                ]
            }
        )

    other = same_dag("a", "b", instr=" twice")
    model = ScriptedModel([same_dag("a", "b"), other, "garbage", same_dag("x", "y"), same_dag("p", "q")])
    planner = LLMPlanner(model, voter=FirstToAheadByK(k=2, temperature=0.0, max_samples=6))
    plan = await planner.plan(Task(text="t"), ROLES)
    assert [s.instruction for s in plan.subtasks] == ["draft", "check"]
    assert model.remaining == 0  # 3 renamed copies of one DAG beat 1 other DAG by 2, the garbage was red-flagged
    assert canonical_key(parse_plan(other)) != canonical_key(parse_plan(same_dag("a", "b")))
    assert canonical_key(parse_plan(same_dag("x", "y"))) == canonical_key(parse_plan(same_dag("a", "b")))


async def test_static_and_recursive_planners() -> None:
    plan = fork_join(["p1", "p2", "p3"], worker="writer", join="merge", joiner="coder")
    got = await StaticPlanner(plan).plan(Task(text="t"), ROLES)
    assert got.sinks() == ["join"]
    assert validate_plan(chain(["a", "b"], role="writer")).subtasks[1].depends_on == ["step0"]
    with pytest.raises(PlanError, match="unknown roles"):
        await StaticPlanner(lambda t: chain(["a"], role="nobody")).plan(Task(text="t"), ROLES)
    rec = RecursivePlanner(StaticPlanner(lambda t: Plan(subtasks=[Subtask(id="s", instruction=t.text, role="writer")])))
    sub = await rec.expand(Task(text="big"), got.subtasks[0], ROLES, depth=0)
    assert sub.subtasks[0].instruction == "p1"
    with pytest.raises(PlanError, match="limit is 2"):
        await rec.expand(Task(text="big"), got.subtasks[0], ROLES, depth=2)
