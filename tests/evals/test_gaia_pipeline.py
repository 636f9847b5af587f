"""The default GAIA pipeline's planner (model plans, fallbacks, the answerer's step as the one sink) and its answer
vote (replies in no answer spelling are red-flagged; the question is recorded as unanswered)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mdap.evals.gaia import FINAL_ID, MINI_DATA, SOLVER_PROMPT, GaiaConfig, GaiaPlanner, load_gaia, run_gaia
from mdap.models import SimulatedModel
from mdap.planners import Task
from mdap.types import Message

ROLES = {"solver": "works with tools", "answerer": "states the answer"}
TASK = Task(text="What is 6 times 7?")


def _planner_replying(reply: str) -> GaiaPlanner:
    return GaiaPlanner(SimulatedModel(lambda messages: reply))


def _plan_reply(*steps: tuple[str, list[str]]) -> str:
    return json.dumps(
        {"subtasks": [{"id": i, "instruction": f"do {i}", "role": "solver", "depends_on": d} for i, d in steps]}
    )


async def test_a_model_plan_gets_the_answer_step_after_every_sink() -> None:
    plan = await _planner_replying(_plan_reply(("a", []), ("b", []), ("c", ["a"]))).plan(TASK, ROLES)
    assert [s.id for s in plan.subtasks] == ["a", "b", "c", FINAL_ID]
    final = plan.by_id()[FINAL_ID]
    assert final.role == "answerer" and final.depends_on == ["b", "c"] and TASK.text in final.instruction
    assert plan.sinks() == [FINAL_ID]


async def test_bad_plans_fall_back_to_the_fixed_plan() -> None:
    for reply in ("no plan today", _plan_reply(*[(f"s{i}", []) for i in range(9)]), _plan_reply((FINAL_ID, []))):
        plan = await _planner_replying(reply).plan(TASK, ROLES)
        assert [(s.id, s.role) for s in plan.subtasks] == [("solve", "solver"), (FINAL_ID, "answerer")]
        assert plan.notes.startswith("fixed plan")
    plan = await GaiaPlanner(None).plan(TASK, ROLES)
    assert [s.id for s in plan.subtasks] == ["solve", FINAL_ID] and plan.notes == "fixed plan"


async def test_answers_in_no_answer_spelling_are_red_flagged(tmp_path: Path) -> None:
    [q] = [q for q in load_gaia(MINI_DATA) if q.question.startswith("How many seconds")]

    def oracle(messages: Sequence[Message]) -> str:
        if messages[0]["content"].startswith(SOLVER_PROMPT[:40]):
            return json.dumps({"answer": "3 days are 259200 seconds"})  # a sentence: the answerer is asked
        return "3 days have 259200 seconds."  # the right number, but in none of the three answer spellings

    # Every sample is red-flagged: two attempts (the policy retries once) of max_samples each, then VoteFailed.
    cfg = GaiaConfig.build(
        data=MINI_DATA, ids=[q.task_id], out=tmp_path, planner="fixed", max_samples=5, solver_actions="tools"
    )
    summary = await run_gaia(cfg, SimulatedModel(oracle))
    [r] = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert r["status"] == "failed" and "VoteFailed" in r["error"]
    assert r["red_flags"] == {"format": 10} and r["model_answer"] == "" and r["correct"] is False
    assert r["subtasks"] == 2 and summary.total.answered == 0 and summary.total.questions == 1
