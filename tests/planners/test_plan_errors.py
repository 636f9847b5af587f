"""Plan validation reports every problem at once (issue 18, item 2): one PlanError lists each, and the LLM
planner's re-ask shows the model all of them."""

from __future__ import annotations

import json

import pytest

from mdap.errors import PlanError
from mdap.models import ScriptedModel
from mdap.planners import LLMPlanner, Plan, Subtask, Task, parse_plan, validate_plan

ROLES = {"writer": "writes text", "coder": "writes code"}

# three problems: a duplicate id, an unknown role, a dependency on a missing id
THREE = json.dumps(
    {
        "subtasks": [
            {"id": "a", "instruction": "do a", "role": "writer", "depends_on": []},
            {"id": "a", "instruction": "do a again", "role": "writer", "depends_on": []},
            {"id": "b", "instruction": "do b", "role": "painter", "depends_on": ["zzz"]},
        ]
    }
)
GOOD = json.dumps({"subtasks": [{"id": "a", "instruction": "do a", "role": "writer", "depends_on": []}]})


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(THREE, ROLES)
    assert len(info.value.problems) == 3
    message = str(info.value)
    assert message.startswith("the plan has 3 problems:")
    for part in ("duplicate subtask ids: a", "unknown roles in b (role 'painter')", "b depends on 'zzz'"):
        assert part in message
        assert sum(part in p for p in info.value.problems) == 1


def test_cycles_self_dependencies_and_the_cap_are_all_listed() -> None:
    def sub(sid: str, *deps: str) -> Subtask:
        return Subtask(id=sid, instruction=f"do {sid}", role="writer", depends_on=list(deps))

    plan = Plan(subtasks=[sub("a", "b"), sub("b", "a"), sub("c", "d"), sub("d", "c"), sub("e", "e")])
    with pytest.raises(PlanError) as info:
        validate_plan(plan, ROLES, max_subtasks=4)
    problems = info.value.problems
    assert len(problems) == 4, problems
    assert "more than the cap of 4" in problems[0]
    assert "e depends on itself" in problems[1]
    assert [p.split(":")[1].split(";")[0].strip() for p in problems[2:]] == ["a -> b -> a", "c -> d -> c"]


def test_one_problem_reads_as_before() -> None:
    with pytest.raises(PlanError, match=r"^unknown roles in a \(role 'painter'\)") as info:
        parse_plan(GOOD.replace("writer", "painter"), ROLES)
    assert info.value.problems == (str(info.value),)


async def test_the_llm_planner_reasks_with_every_problem() -> None:
    model = ScriptedModel([THREE, GOOD])
    plan = await LLMPlanner(model).plan(Task(text="t"), ROLES)
    assert [s.id for s in plan.subtasks] == ["a"]
    reask = model.calls[1].prompt
    assert reask.startswith("That plan is invalid: the plan has 3 problems:")
    for part in ("duplicate subtask ids: a", "unknown roles in b (role 'painter')", "b depends on 'zzz'"):
        assert any(line.startswith("- ") and part in line for line in reask.splitlines())
    assert "Fix every problem" in reask
