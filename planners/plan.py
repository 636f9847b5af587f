"""Plans: the Task a user asks, the Subtasks a planner splits it into, and the validation of their DAG.

A :class:`Plan` is a DAG of :class:`Subtask` s. :func:`validate_plan` checks it with networkx before anything
runs (ids unique, dependencies exist, no cycle, roles known, size under a cap) and raises
:class:`~mdap.errors.PlanError` naming exactly what is wrong, so a planner can re-ask with that message.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mdap.errors import PlanError
from mdap.jsontext import loads_json

__all__ = [
    "FailureNote",
    "Plan",
    "ReplanContext",
    "Subtask",
    "Task",
    "canonical_key",
    "parse_plan",
    "role_table",
    "validate_plan",
]

_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
_SPACE = re.compile(r"\s+")


class Task(BaseModel):
    """What the user asks for.

    Attributes:
        text: the task in words.
        inputs: named inputs the task refers to (JSON-able values).
        files: paths of files that come with the task (relative to the workspace).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1, description="the task in words")
    inputs: dict[str, Any] = Field(default_factory=dict, description="named inputs (JSON-able)")
    files: list[str] = Field(default_factory=list, description="files that come with the task")


class Subtask(BaseModel):
    """One node of a plan: an instruction for a worker role, run after the subtasks it depends on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="unique within the plan: letters, digits, '_', '.', ':', '-' (at most 64)")
    instruction: str = Field(min_length=1, description="what the worker must do, self-contained")
    role: str = Field(min_length=1, description="name of the worker role that executes it")
    depends_on: list[str] = Field(default_factory=list, description="ids whose results this subtask needs")

    @field_validator("id")
    @classmethod
    def _id_ok(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(f"subtask id {value!r} must be 1-64 letters, digits, '_', '.', ':' or '-'")
        return value


class Plan(BaseModel):
    """A DAG of subtasks. Build one directly, or let a planner make it; validate it with :func:`validate_plan`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subtasks: list[Subtask] = Field(description="the nodes, in any order")
    notes: str = ""
    """The planner's rationale, if it gave one."""

    def by_id(self) -> dict[str, Subtask]:
        """The subtasks by id."""
        return {s.id: s for s in self.subtasks}

    def sinks(self) -> list[str]:
        """Ids no other subtask depends on (their results make the answer), in plan order."""
        needed = {d for s in self.subtasks for d in s.depends_on}
        return [s.id for s in self.subtasks if s.id not in needed]

    def graph(self) -> nx.DiGraph:
        """The plan as a networkx DiGraph with an edge dependency -> dependent."""
        g = nx.DiGraph()
        g.add_nodes_from(s.id for s in self.subtasks)
        g.add_edges_from((d, s.id) for s in self.subtasks for d in s.depends_on)
        return g


class FailureNote(BaseModel):
    """What a replanning planner is told about one failed subtask."""

    id: str
    instruction: str
    role: str
    error: str = Field(description="why it failed, after its retries")


class ReplanContext(BaseModel):
    """The context of a replan: the plan that failed, its failures and what already succeeded.

    Subtasks of the new plan that keep an id, instruction, role and dependencies of a completed subtask keep
    its result (they are not run again).
    """

    previous: Plan
    failures: list[FailureNote]
    completed: dict[str, str] = Field(default_factory=dict, description="id -> short result of done subtasks")
    attempt: int = 1
    """1 for the first replan."""


def validate_plan(
    plan: Plan,
    roles: Iterable[str] | None = None,
    *,
    max_subtasks: int | None = None,
) -> Plan:
    """Check that ``plan`` is a runnable DAG; return it unchanged.

    Every problem is found before anything is raised, so one error lists them all (a planner re-asks once
    for all of them).

    Args:
        plan: the plan to check.
        roles: the known worker role names; None skips the role check.
        max_subtasks: the most subtasks a plan may have (a guard against task explosion); None = no cap.

    Raises:
        PlanError: no subtasks, duplicate ids, an unknown role, a dependency on a missing id or on itself, a
            cycle, or more subtasks than ``max_subtasks``. The message names every offending id; with several
            problems it lists each on a line (and :attr:`~mdap.errors.PlanError.problems` holds them).
    """
    problems: list[str] = []
    if max_subtasks is not None and len(plan.subtasks) > max_subtasks:
        problems.append(
            f"the plan has {len(plan.subtasks)} subtasks, more than the cap of {max_subtasks}; "
            "merge subtasks or raise max_subtasks"
        )
    key = frozenset(roles) if roles is not None else None
    hit = _VALIDATED.get(id(plan))
    known = hit is not None and hit[0] is plan and hit[1] == key  # this very (frozen) plan passed a moment ago
    if not known:
        problems += _problems(plan, key)
    if len(problems) == 1:
        raise PlanError(problems[0])
    if problems:
        listed = "".join(f"\n- {p}" for p in problems)
        raise PlanError(f"the plan has {len(problems)} problems:{listed}", problems)
    if not known:
        _VALIDATED[id(plan)] = (plan, key)
        while len(_VALIDATED) > 8:
            del _VALIDATED[next(iter(_VALIDATED))]
    return plan


_VALIDATED: dict[int, tuple[Plan, frozenset[str] | None]] = {}
"""The last few plans validate_plan passed (holding them keeps their ids from being reused)."""


def _problems(plan: Plan, roles: frozenset[str] | None) -> list[str]:
    """Everything wrong with ``plan``'s DAG (and its roles, when ``roles`` is given), one line each."""
    if not plan.subtasks:
        return ["the plan has no subtasks; give at least one"]
    problems: list[str] = []
    seen: set[str] = set()
    dupes: list[str] = []
    for s in plan.subtasks:
        if s.id in seen:
            dupes.append(s.id)
        seen.add(s.id)
    if dupes:
        problems.append(f"duplicate subtask ids: {', '.join(sorted(set(dupes)))}; every id must be unique")
    if roles is not None:
        bad = [f"{s.id} (role {s.role!r})" for s in plan.subtasks if s.role not in roles]
        if bad:
            problems.append(f"unknown roles in {', '.join(bad)}; use one of: {', '.join(sorted(roles))}")
    dangling = []
    for s in plan.subtasks:
        for d in s.depends_on:
            if d == s.id:
                dangling.append(f"{s.id} depends on itself")
            elif d not in seen:
                dangling.append(f"{s.id} depends on {d!r}, which is not a subtask id")
    if dangling:
        problems.append("dangling dependencies: " + "; ".join(dangling))
    g = plan.graph()
    g.remove_edges_from(list(nx.selfloop_edges(g)))  # reported above
    order = {sid: i for i, sid in enumerate(g.nodes)}  # plan order
    parts = sorted(
        (p for p in nx.strongly_connected_components(g) if len(p) > 1), key=lambda p: min(map(order.__getitem__, p))
    )
    for part in parts:  # one cycle of each knot, written from its subtask that comes first in the plan
        nodes = [str(u) for u, _ in nx.find_cycle(g.subgraph(part))]
        first = nodes.index(min(nodes, key=order.__getitem__))
        path = " -> ".join(nodes[first:] + nodes[:first] + [nodes[first]])
        problems.append(f"the plan has a cycle: {path}; dependencies must form a DAG")
    return problems


def parse_plan(text: str, roles: Iterable[str] | None = None, *, max_subtasks: int | None = None) -> Plan:
    """Parse a planner model's reply into a validated :class:`Plan`.

    Accepts a JSON object ``{"subtasks": [...]}`` (or a bare list of subtasks), optionally inside a fenced
    code block or surrounded by prose.

    Raises:
        PlanError: no JSON, malformed JSON, fields missing or of the wrong type, or an invalid DAG.
    """
    data = _extract_json(text)
    if isinstance(data, list):
        data = {"subtasks": data}
    if not isinstance(data, dict):
        raise PlanError('the reply must be a JSON object {"subtasks": [...]}')
    data = {k: v for k, v in data.items() if k in ("subtasks", "notes")}
    try:
        plan = Plan.model_validate(data)
    except ValidationError as err:
        raise PlanError(f"the plan JSON does not match the schema: {_short_errors(err)}") from err
    return validate_plan(plan, roles, max_subtasks=max_subtasks)


def canonical_key(plan: Plan) -> str:
    """A key equal for plans that are the same DAG up to renaming of ids (used to vote on plans).

    Each subtask is labelled by its role, its whitespace-normalized instruction and the sorted labels of its
    dependencies (recursively); the key is a hash of the sorted labels of all subtasks.
    """
    by_id = plan.by_id()
    labels: dict[str, str] = {}

    def label(sid: str) -> str:
        got = labels.get(sid)
        if got is None:
            s = by_id[sid]
            deps = sorted(label(d) for d in s.depends_on)
            text = _SPACE.sub(" ", s.instruction.strip())
            got = hashlib.sha256(json.dumps([s.role, text, deps]).encode()).hexdigest()[:24]
            labels[sid] = got
        return got

    for sid in nx.topological_sort(plan.graph()):
        label(sid)
    return hashlib.sha256(json.dumps(sorted(labels.values())).encode()).hexdigest()


def role_table(roles: Mapping[str, str]) -> str:
    """Roles as ``- name: description`` lines, for prompts."""
    return "\n".join(f"- {name}: {desc}" if desc else f"- {name}" for name, desc in roles.items())


def _extract_json(text: str) -> Any:
    body = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", body, re.DOTALL)
    if fence:
        body = fence.group(1).strip()
    starts = [i for i in (body.find("{"), body.find("[")) if i >= 0]
    if not starts:
        raise PlanError('no JSON found in the reply; answer with a JSON object {"subtasks": [...]} only')
    start = min(starts)
    end = max(body.rfind("}"), body.rfind("]"))
    try:
        return loads_json(body[start : end + 1])
    except ValueError as err:
        raise PlanError(f"the reply is not valid JSON ({err}); answer with JSON only") from err


def _short_errors(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:20]:
        where = ".".join(str(x) for x in e["loc"])
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)
