"""The default GAIA pipeline: a planner splits the question into tool-using ``solver`` steps, and an
``answerer`` step states the final answer, voted on its extracted canonical form. An answer is the same in each
of its spellings, ``{"answer": X}``, ``FINAL ANSWER: X`` or ``\\boxed{X}`` (:func:`extract_final_answer`); a
solver's answer that already has the form of a final answer passes through the answerer unchanged (the model
is not asked to restate it: small models "recompute" it wrong).

    pipeline = gaia_pipeline(model, question, workspace)
    result = await pipeline.run(gaia_task(question))
    answer = result.answer  # the extracted final answer

The planner is the :class:`~mdap.planners.LLMPlanner` on the ``solver`` role; when the model gives no valid plan
the question falls back to the fixed plan (one solver step), so a weak model still answers. A plan of one step is
the fixed plan too: its instruction could only restate the question, and a small model restates it wrong ("3 days
is equal to 2160 seconds"). Either way the last
subtask is the answerer's, which depends on every other sink, and every solver instruction carries the question
verbatim.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mdap.agents import CoordinatorPolicy, Pipeline, Sandbox, WorkerRole, WorkItem, Workspace, python_tool
from mdap.agents.replies import clean_answer, json_object, marked_answer
from mdap.errors import PlanError, RedFlag
from mdap.jsontext import loads_json
from mdap.models import ChatModel
from mdap.planners import (
    PLANNER_SYSTEM,
    LLMPlanner,
    Plan,
    ReplanContext,
    Subtask,
    Task,
    count_red_flag,
    validate_plan,
)
from mdap.voters import Voter, VoterSpec

from .loader import GaiaQuestion
from .tools import attachment_tool, calculator_tool, file_head

__all__ = [
    "ANSWERER_PROMPT",
    "ANSWER_RULES",
    "FINAL_ID",
    "GAIA_PLANNER_SYSTEM",
    "GaiaPlanner",
    "SOLVER_PROMPT",
    "PlannerKind",
    "SolverActions",
    "extract_final_answer",
    "final_shaped",
    "gaia_pipeline",
    "gaia_task",
    "solver_prompt",
]

PlannerKind = Literal["llm", "fixed"]
SolverActions = Literal["code", "tools"]
"""How the solver acts: ``"code"``, python blocks (:attr:`WorkerRole.code_actions`), or ``"tools"``, tool calls
(native where the server takes them, else JSON text)."""

FINAL_ID = "final_answer"
"""The id of the answerer's subtask, the plan's one sink."""

ANSWER_RULES = """The answer is a number, or as few words as possible, or a comma-separated list of numbers and/or \
strings.
A number: digits only, no thousands separators, no units or signs such as $ or % unless the question asks for them.
A string: no articles, no abbreviations (write city names in full); write digits in plain text unless asked otherwise.
A list: apply these rules to each element, in the order the question asks for."""

SOLVER_PROMPT = """You work on one step of a question that has one short, exact answer. {how}"""
"""The solver's prompt; ``{how}`` is how it works, by the solver's actions and tools (:func:`solver_prompt`)."""

_HOW_CODE = "Work it out with a short Python program that computes the result and prints just the result (a \
number, a few words or a comma-separated list; not a sentence); do not compute by heart.{file}"
_FILE_IN_FOLDER = """ The attached file {name} is in the working folder: read it with Python's standard library \
(open, csv, json; there is no pandas). It begins:
```
{head}
```"""
_HOW_TOOLS = "Use the tools when they help: {tools}. Compute with a tool rather than by heart: write a short \
Python program that prints the result. When you have the result, reply with just the result as your answer (a \
number, a few words or a comma-separated list), not a sentence."

_TOOLS_WITH_FILE = "python (runs code in a folder that holds the attached file), read_attachment, calculator"
_TOOLS_NO_FILE = "python (runs code; this question has no attached file), calculator"

ANSWERER_PROMPT = (
    "You state the final answer to a question, given the work done on it. Copy the answer the work found; "
    'do not compute it again. Reply {"answer": "<answer>"}.\n' + ANSWER_RULES
)

GAIA_PLANNER_SYSTEM = (
    PLANNER_SYSTEM
    + """
Every subtask uses the role "solver". Write what to find or compute, never a result: the solver works it out \
with its tools. Name only the files listed with the task. Plan as few subtasks as the task needs, at most {max}."""
)
"""The GAIA planner's prompt: :data:`~mdap.planners.PLANNER_SYSTEM` and rules against what small models plan."""

_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"^[-+]?[$€£]?\d[\d,]*(?:\.\d+)?%?$")
_NOT_FINAL_WORDS = frozenset(
    {"is", "are", "was", "were", "be", "equals", "equal", "answer", "result", "i", "we", "it", "the", "of", "to"}
)
_MAX_ITEM_WORDS = 4
_MAX_LITERAL = 10_000
_COUNTING = re.compile(r"\bhow\s+(?:many|much)\b", re.IGNORECASE)
_QUESTION_MARK = "\n\nQuestion: "
_QUESTION_START = "Question: "
_STEP_MARK = "\n\nYour step: "


def solver_prompt(attachment: Path | None, actions: SolverActions = "code") -> str:
    """The solver's system prompt: :data:`SOLVER_PROMPT` for its ``actions``; acting in code, with the name and
    the beginning of the ``attachment`` (the workspace's copy) when the question has one (a program written for
    a file the model has not seen guesses its columns).

    Raises:
        ToolError: the attachment is not a plain file.
    """
    if actions == "code":
        where = ""
        if attachment is not None:
            where = _FILE_IN_FOLDER.replace("{name}", attachment.name).replace("{head}", file_head(attachment))
        how = _HOW_CODE.replace("{file}", where)
    else:
        how = _HOW_TOOLS.replace("{tools}", _TOOLS_WITH_FILE if attachment else _TOOLS_NO_FILE)
    return SOLVER_PROMPT.replace("{how}", how)


def extract_final_answer(text: str) -> str | None:
    """The final answer of ``text`` in any of its spellings, or None: after the last ``FINAL ANSWER:`` (its
    first non-empty line), inside the last ``\\boxed{...}``, or the ``answer`` of a ``{"answer": ...}`` object
    (itself read the same way when it holds a marked answer).

    Markdown emphasis (``**``), surrounding quotes or backticks and a trailing full stop are removed, and runs of
    whitespace become one space; the case and the rest of the punctuation are kept for the scorer. A JSON list
    answer becomes a comma-separated list.
    """
    marked = marked_answer(text)
    if marked is not None:
        return marked
    data = json_object(text)
    if data is None or "answer" not in data:
        return None
    value = data["answer"]
    if isinstance(value, str):
        inner = marked_answer(value)
        return inner if inner is not None else (_tidy(value) or None)
    return _tidy(json.dumps(value, ensure_ascii=False)) or None


def _tidy(text: str) -> str:
    """An answer the worker extracted, tidied for the scorer: a JSON or Python list as a comma-separated list, the
    ``answer`` of a JSON or Python dict (a program may print ``{'answer': 42}``), then the cleaning of
    :func:`extract_final_answer`."""
    text = text.strip()
    if text.startswith(("[", "(")):
        items = _literal_list(text)
        if items is not None:
            text = ", ".join(str(i) for i in items)
    elif text.startswith("{"):
        value = _literal(text)
        if isinstance(value, dict) and isinstance(value.get("answer"), str | int | float):
            text = str(value["answer"])
    return clean_answer(text)


def _literal(text: str) -> object:
    """``text`` read as JSON, else as a Python literal (read, never run); None when it is neither."""
    try:
        return loads_json(text)
    except ValueError:
        pass
    if len(text) > _MAX_LITERAL:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _literal_list(text: str) -> list[object] | None:
    """The items of a JSON list, or of a Python list or tuple literal as the python tool prints one
    (``['apple', 'kiwi']``), when each is a string or a number; else None."""
    items = _literal(text)
    if isinstance(items, list | tuple) and all(isinstance(i, str | int | float) for i in items):
        return list(items)
    return None


def _final_answer(text: str) -> str:
    answer = marked_answer(text) or _tidy(text)
    if not answer:
        raise RedFlag("format", "an empty final answer")
    return answer


def _solver_answer(text: str) -> str:
    out = _tidy(text) if text.lstrip().startswith(("[", "(")) else _SPACE.sub(" ", text).strip()
    if not out:
        raise RedFlag("parse", "empty answer")
    return out


def final_shaped(text: str, question: str = "") -> bool:
    """Whether ``text`` already has the form of a GAIA final answer to ``question``: one line, and a number, or a
    comma-separated list of items of at most four words each, none of them a word of a sentence ("is", "the",
    "answer", ...). A question that asks how many or how much takes a number only (a list is not its answer)."""
    text = text.strip()
    if not text or "\n" in text or len(text) > 200:
        return False
    if _NUMBER.match(text):
        return True
    if _COUNTING.search(question):
        return False
    for item in text.split(","):
        words = item.split()
        if not words or len(words) > _MAX_ITEM_WORDS:
            return False
        if any(w.lower().strip(".:;!?") in _NOT_FINAL_WORDS for w in words):
            return False
    return not text.endswith((".", ":", "?"))


def _question_of(instruction: str) -> str:
    """The question a GAIA step's instruction carries (the fixed and answer steps end with it; a planned step
    starts with it, see :func:`_with_question`)."""
    if instruction.startswith(_QUESTION_START):
        return instruction[len(_QUESTION_START) :].split(_STEP_MARK, 1)[0]
    return instruction.split(_QUESTION_MARK, 1)[-1]


def _pass_through(item: WorkItem) -> str | None:
    """The answerer's answer without the model: the one solver answer it depends on, when that is final-shaped."""
    if len(item.artifacts) != 1 or not item.artifacts[0].ok:
        return None
    text = _tidy(item.artifacts[0].text)
    return text if final_shaped(text, _question_of(item.instruction)) else None


def _output_answer(item: WorkItem, output: str) -> str | None:
    """The solver's answer without the model: its program's output, when that is final-shaped (one line) and
    not labelled (``Total: 2008`` goes to the model, which answers ``2008``)."""
    text = _tidy(output)
    if ": " in text:
        return None
    return text if final_shaped(text, _question_of(item.instruction)) else None


def gaia_task(question: GaiaQuestion) -> Task:
    """The pipeline task of ``question``: its text, with the attachment named (the workers' workspace holds it)."""
    text = question.question
    if question.file_name:
        text += f"\n\nAttached file: {Path(question.file_name).name}"
    files = [Path(question.file_name).name] if question.file_name else []
    return Task(text=text, files=files)


def _answer_step(task: Task, depends_on: list[str]) -> Subtask:
    return Subtask(
        id=FINAL_ID,
        instruction=f"Give the final answer to this question from the work below.{_QUESTION_MARK}{task.text}\n\n"
        + ANSWER_RULES,
        role="answerer",
        depends_on=depends_on,
    )


def _with_question(step: Subtask, task: Task) -> Subtask:
    """``step`` with the question verbatim before its instruction (a planner's instruction alone loses details,
    and a small model's paraphrase can be wrong: the question comes first, the step is what to do of it)."""
    if task.text in step.instruction:
        return step
    return step.model_copy(update={"instruction": f"{_QUESTION_START}{task.text}{_STEP_MARK}{step.instruction}"})


def _fixed_steps(task: Task) -> list[Subtask]:
    return [
        Subtask(
            id="solve",
            instruction=f"Work out the answer to this question.\n\nQuestion: {task.text}",
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
                system_prompt=GAIA_PLANNER_SYSTEM.replace("{max}", str(self.max_subtasks)),
            )
            inner_context = None
            if context is not None:
                inner_context = context.model_copy(update={"previous": _without_answer(context.previous)})
            try:
                made = await inner.plan(task, {"solver": roles["solver"]}, inner_context)
            except PlanError as err:
                notes = f"fixed plan: the planner model gave no valid plan ({str(err)[:300]})"
                count_red_flag(self.model, "plan_fallback")
            else:
                if len(made.subtasks) == 1:
                    notes = "fixed plan: the model planned one step, which is the question itself"
                elif all(s.id != FINAL_ID for s in made.subtasks):
                    steps = [_with_question(s, task) for s in made.subtasks]
                    notes = made.notes or "planned by the model"
                else:
                    notes = f"fixed plan: the model's plan used the reserved id {FINAL_ID}"
                    count_red_flag(self.model, "plan_fallback")
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
    actions: SolverActions = "code",
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
        actions: how the solver acts, see :data:`SolverActions` (code: measured better with small coder models).
    """
    ws = Workspace(workspace)
    attachment = None
    if question.attachment is not None:
        attachment = ws.root / question.attachment.name
        _copy_in(question.attachment, attachment)
    settings = {"k": k, "temperature": temperature, "max_samples": max_samples, "max_tokens": max_tokens}
    answer = VoterSpec.parse({**settings, "first_temperature": 0.0, "adapter": adapter}, "GAIA voter")
    solver_voter: Voter = answer.model_copy(update={"k": 1, "max_samples": 3}).build()
    answer_voter: Voter = answer.build()
    # acting in code, python is the one tool (it reads the file and computes); read_attachment only where there is a
    # file: offered without one, a small model calls it for invented files
    tools = [python_tool(ws, sandbox=sandbox)]
    if actions == "tools":
        tools += [attachment_tool(attachment), calculator_tool()] if attachment else [calculator_tool()]
    solver = WorkerRole(
        "solver",
        description="works out one step of the question with tools: " + ", ".join(t.name for t in tools),
        tools=tools,
        voter=solver_voter,
        system_prompt=solver_prompt(attachment, actions),
        max_tool_rounds=max_tool_rounds,
        answer_parser=_solver_answer,
        must_act=True,  # with native tool calls: the first reply calls a tool (a small model answers from memory)
        code_actions=actions == "code",
        answer_from_output=_output_answer,
    )
    answerer = WorkerRole(
        "answerer",
        description="states the final answer in the required format",
        voter=answer_voter,
        system_prompt=ANSWERER_PROMPT,
        answer_parser=_final_answer,
        plain_answers=False,
        pass_through=_pass_through,
    )
    return (
        Pipeline(f"gaia-{question.task_id}", model=model)
        .planner(GaiaPlanner(model if planner == "llm" else None, max_tokens=max_tokens, adapter=adapter))
        .role(solver)
        .role(answerer)
        .policy(policy or CoordinatorPolicy(retries=1, max_replans=0, subtask_timeout_s=600.0))
        .checkpoint(None)
    )
