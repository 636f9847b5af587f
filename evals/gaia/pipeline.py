"""The default GAIA pipeline: a planner splits the question into tool-using ``solver`` steps, and an
``answerer`` step states the final answer as ``FINAL ANSWER: ...``, voted on its extracted canonical form.

    pipeline = gaia_pipeline(model, question, workspace)
    result = await pipeline.run(gaia_task(question))
    answer = result.answer  # the extracted final answer

The planner is the :class:`~mdap.planners.LLMPlanner` on the ``solver`` role; when the model gives no valid plan
the question falls back to the fixed plan (one solver step), so a weak model still answers. Either way the last
subtask is the answerer's, which depends on every other sink.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mdap.agents import CoordinatorPolicy, Pipeline, Sandbox, WorkerRole, Workspace, python_tool
from mdap.errors import PlanError, RedFlag
from mdap.models import ChatModel
from mdap.planners import LLMPlanner, Plan, ReplanContext, Subtask, Task, validate_plan
from mdap.voters import FirstToAheadByK, Voter

from .loader import GaiaQuestion
from .tools import attachment_tool, calculator_tool

__all__ = [
    "ANSWERER_PROMPT",
    "ANSWER_RULES",
    "FINAL_ID",
    "GaiaPlanner",
    "SOLVER_PROMPT",
    "PlannerKind",
    "extract_final_answer",
    "gaia_pipeline",
    "gaia_task",
]

PlannerKind = Literal["llm", "fixed"]

FINAL_ID = "final_answer"
"""The id of the answerer's subtask, the plan's one sink."""

ANSWER_RULES = """End your reply with one line of the form
FINAL ANSWER: <answer>
The answer is a number, or as few words as possible, or a comma-separated list of numbers and/or strings.
A number: digits only, no thousands separators, no units or signs such as $ or % unless the question asks for them.
A string: no articles, no abbreviations (write city names in full); write digits in plain text unless asked otherwise.
A list: apply these rules to each element, in the order the question asks for."""

SOLVER_PROMPT = """You work on one step of a question that has one short, exact answer. Use the tools when they \
help: python (runs code in a folder that holds the attached file), read_attachment, calculator. Check numbers \
with a tool rather than by heart. Reply with what you found: the result of your step and the facts it rests on."""

ANSWERER_PROMPT = (
    "You state the final answer to a question, given the work done on it. Your answer is one line, "
    '{"answer": "FINAL ANSWER: <answer>"}.\n' + ANSWER_RULES
)

_FINAL = re.compile(r"final\s*answer\s*\**\s*[:\uff1a]", re.IGNORECASE)  # ASCII or full-width colon
_SPACE = re.compile(r"\s+")


def extract_final_answer(text: str) -> str | None:
    """The answer after the last ``FINAL ANSWER:`` in ``text`` (its first non-empty line), or None.

    Markdown emphasis (``**``), surrounding quotes or backticks and a trailing full stop are removed, and runs of
    whitespace become one space; the case and the rest of the punctuation are kept for the scorer.
    """
    marks = list(_FINAL.finditer(text))
    if not marks:
        return None
    rest = text[marks[-1].end() :]
    line = next((ln for ln in rest.splitlines() if ln.strip(" *`\"'")), "")
    answer = _SPACE.sub(" ", line.strip(" \t*`\"'"))
    if answer.endswith(".") and not answer[:-1].rstrip().endswith("."):
        answer = answer[:-1].rstrip()
    return answer or None


def _final_answer(text: str) -> str:
    answer = extract_final_answer(text)
    if answer is None:
        raise RedFlag("format", "no 'FINAL ANSWER: ...' line in the reply")
    return answer


def gaia_task(question: GaiaQuestion) -> Task:
    """The pipeline task of ``question``: its text, with the attachment named (the workers' workspace holds it)."""
    text = question.question
    if question.file_name:
        text += f"\n\nAttached file: {Path(question.file_name).name} (read it with read_attachment or python)"
    files = [Path(question.file_name).name] if question.file_name else []
    return Task(text=text, files=files)


def _answer_step(task: Task, depends_on: list[str]) -> Subtask:
    return Subtask(
        id=FINAL_ID,
        instruction=f"Give the final answer to this question from the work below.\n\nQuestion: {task.text}\n\n"
        + ANSWER_RULES,
        role="answerer",
        depends_on=depends_on,
    )


def _fixed_steps(task: Task) -> list[Subtask]:
    return [
        Subtask(
            id="solve",
            instruction="Work out the answer to this question; use the tools to read files and compute.\n\n"
            f"Question: {task.text}",
            role="solver",
        )
    ]


@dataclass
class GaiaPlanner:
    """Plans a GAIA question: the model's plan of ``solver`` steps (or the fixed one), then the answerer's step.

    Args:
        model: the planner model; None = always the fixed plan (one solver step).
        max_subtasks: the most solver steps the model may plan.
        max_attempts: replies the LLM planner may try before the fixed plan is used.
        max_tokens: completion token limit of a planner reply.
        adapter: the LoRA adapter the planner samples from.
    """

    model: ChatModel | None = None
    max_subtasks: int = 5
    max_attempts: int = 2
    max_tokens: int | None = 1024
    adapter: str | None = None

    async def plan(self, task: Task, roles: Mapping[str, str], context: ReplanContext | None = None) -> Plan:
        """The plan for ``task``; see the class docstring.

        Raises:
            PlanError: the roles lack ``solver`` or ``answerer``.
        """
        missing = [r for r in ("solver", "answerer") if r not in roles]
        if missing:
            raise PlanError(f"the GAIA planner needs the roles solver and answerer; missing {', '.join(missing)}")
        steps, notes = _fixed_steps(task), "fixed plan"
        if self.model is not None:
            inner = LLMPlanner(
                self.model,
                max_attempts=self.max_attempts,
                max_subtasks=self.max_subtasks,
                max_tokens=self.max_tokens,
                adapter=self.adapter,
            )
            inner_context = None
            if context is not None:
                inner_context = context.model_copy(update={"previous": _without_answer(context.previous)})
            try:
                made = await inner.plan(task, {"solver": roles["solver"]}, inner_context)
            except PlanError as err:
                notes = f"fixed plan: the planner model gave no valid plan ({str(err)[:300]})"
            else:
                if all(s.id != FINAL_ID for s in made.subtasks):
                    steps, notes = list(made.subtasks), made.notes or "planned by the model"
        sinks = Plan(subtasks=steps).sinks()
        plan = Plan(subtasks=[*steps, _answer_step(task, sinks)], notes=notes)
        return validate_plan(plan, roles)


def _without_answer(plan: Plan) -> Plan:
    steps = [s for s in plan.subtasks if s.id != FINAL_ID]
    return Plan(subtasks=steps or plan.subtasks, notes=plan.notes)


def _copy_in(source: Path, dest: Path) -> None:
    """Copy the attachment to ``dest`` in the workspace, replacing what is there: a symlink or hardlink an earlier
    run left at that name is removed, never written through."""
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    else:
        dest.unlink(missing_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    with os.fdopen(fd, "wb") as out, source.open("rb") as src:
        shutil.copyfileobj(src, out)


def gaia_pipeline(
    model: ChatModel,
    question: GaiaQuestion,
    workspace: str | Path,
    *,
    planner: PlannerKind = "llm",
    k: int = 2,
    max_samples: int = 8,
    temperature: float = 0.7,
    max_tokens: int | None = 1024,
    max_tool_rounds: int = 4,
    policy: CoordinatorPolicy | None = None,
    adapter: str | None = None,
    sandbox: Sandbox | None = None,
) -> Pipeline:
    """The default GAIA pipeline for ``question``, its workers confined to ``workspace`` (the attachment is copied in).

    The solver's replies (tool calls, findings) are free text no two samples share, so each is decided by one
    valid sample (the first at temperature 0; a red-flagged one is redrawn at ``temperature``); the answerer's
    extracted final answer is voted first-to-ahead-by-``k``.

    Args:
        model: the model of the planner and both roles.
        question: the question (its attachment goes into the workspace).
        workspace: the folder the tools work in.
        planner: ``"llm"`` (the model plans, falling back to the fixed plan) or ``"fixed"``.
        k: the answer vote's margin.
        max_samples: the answer vote's sample cap (VoteFailed after it).
        temperature: the answer vote's sampling temperature.
        max_tokens: completion token limit per sample.
        max_tool_rounds: tool rounds per solver step.
        policy: the coordinator policy (default: one retry, no replans, 10 minutes per subtask).
        adapter: the LoRA adapter the samples come from.
        sandbox: where the python tool runs (default: :meth:`Sandbox.default`, bubblewrap).
    """
    ws = Workspace(workspace)
    attachment = None
    if question.attachment is not None:
        attachment = ws.root / question.attachment.name
        _copy_in(question.attachment, attachment)
    solver_voter: Voter = FirstToAheadByK(
        k=1, temperature=temperature, first_temperature=0.0, max_samples=3, max_tokens=max_tokens, adapter=adapter
    )
    answer_voter: Voter = FirstToAheadByK(
        k=k,
        temperature=temperature,
        first_temperature=0.0,
        max_samples=max_samples,
        max_tokens=max_tokens,
        adapter=adapter,
    )
    solver = WorkerRole(
        "solver",
        description="works out one step of the question with tools: python, read_attachment, calculator",
        tools=[python_tool(ws, sandbox=sandbox), attachment_tool(attachment), calculator_tool()],
        voter=solver_voter,
        system_prompt=SOLVER_PROMPT,
        max_tool_rounds=max_tool_rounds,
    )
    answerer = WorkerRole(
        "answerer",
        description="states the final answer in the required format",
        voter=answer_voter,
        system_prompt=ANSWERER_PROMPT,
        answer_parser=_final_answer,
    )
    return (
        Pipeline(f"gaia-{question.task_id}", model=model)
        .planner(GaiaPlanner(model if planner == "llm" else None, max_tokens=max_tokens, adapter=adapter))
        .role(solver)
        .role(answerer)
        .policy(policy or CoordinatorPolicy(retries=1, max_replans=0, subtask_timeout_s=600.0))
        .checkpoint(None)
    )
