"""LLMPlanner: ask a model for a JSON plan, validate it, and re-ask with every validation problem."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mdap.errors import ConfigError, PlanError, RedFlag, VoteFailed
from mdap.models import ChatModel, json_schema_format, supports, with_options
from mdap.types import Message
from mdap.voters import Voter

from .base import count_red_flag, count_red_flags
from .plan import Plan, ReplanContext, Task, canonical_key, parse_plan, role_table

__all__ = ["PLANNER_SYSTEM", "LLMPlanner", "plan_schema"]

PLANNER_SYSTEM = """You are the planner of a multi-agent system. Split the user's task into small, self-contained \
subtasks that worker roles can each do alone. A subtask sees only its own instruction and the results of the \
subtasks it depends on, so write every instruction in full.

Worker roles:
{roles}

Reply with JSON only, in exactly this form:
{{"subtasks": [{{"id": "s1", "instruction": "...", "role": "<a role name>", "depends_on": []}}]}}
Ids are short and unique; depends_on lists ids of earlier subtasks; the dependencies must form a DAG (no cycles).
The results of the subtasks nothing depends on make the final answer."""


_FIX = "Fix every problem and reply with the corrected JSON plan only."


def plan_schema(roles: list[str], max_subtasks: int | None = None) -> dict[str, Any]:
    """The JSON schema of a plan reply: subtasks with string ids and instructions, a role among ``roles`` and
    a list of dependency ids; at least one subtask and at most ``max_subtasks``. No ``pattern`` (see
    :func:`~mdap.models.json_schema_format`): ids and the DAG are checked by :func:`parse_plan`."""
    subtasks: dict[str, Any] = {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "instruction": {"type": "string"},
                "role": {"enum": list(roles)},
                "depends_on": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["id", "instruction", "role", "depends_on"],
            "additionalProperties": False,
        },
    }
    if max_subtasks is not None:
        subtasks["maxItems"] = max_subtasks
    return {
        "type": "object",
        "properties": {"subtasks": subtasks},
        "required": ["subtasks"],
        "additionalProperties": False,
    }


class _Voted:
    """A parsed plan as a vote: equal (and hashing equal) for plans equal up to renaming of ids."""

    __slots__ = ("key", "plan")

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.key = canonical_key(plan)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Voted) and other.key == self.key


@dataclass
class LLMPlanner:
    """Plans by asking a model for a JSON plan.

    Each reply is parsed and validated (pydantic schema, then networkx: acyclic, unique ids, known roles,
    dependencies exist). On an invalid reply the planner asks again, showing the model its reply and every
    validation problem at once (:func:`~mdap.planners.validate_plan` collects them all), up to
    ``max_attempts`` replies in all, then raises :class:`~mdap.errors.PlanError`. A
    re-ask samples at ``retry_temperature`` (a greedy model re-asked at 0 writes the same plan again). Every
    discarded reply is counted as a red flag of the model (``plan``, or ``truncated`` when it hit
    ``max_tokens``; see :func:`~mdap.planners.count_red_flag`). Where the model takes structured outputs, replies
    are constrained to the plan schema (:func:`plan_schema`: roles as an enum, at most ``max_subtasks``); the
    validation stays.

    Args:
        model: the planner model.
        max_attempts: replies to try before giving up (>= 1).
        voter: vote on the plan (canonical form: the DAG up to renaming of ids; invalid plans are red-flagged);
            None asks for one sample at ``temperature``.
        temperature: sampling temperature of the first reply when there is no voter.
        retry_temperature: sampling temperature of a re-ask when there is no voter (None: ``temperature``).
        max_tokens: completion token limit of a reply.
        adapter: the LoRA adapter (served model name) of the planner.
        max_subtasks: reject plans with more subtasks (task explosion guard); None = no cap.
        system_prompt: replaces :data:`PLANNER_SYSTEM` (must contain ``{roles}``).
    """

    model: ChatModel
    max_attempts: int = 3
    voter: Voter | None = None
    temperature: float = 0.0
    retry_temperature: float | None = 0.7
    max_tokens: int | None = 2048
    adapter: str | None = None
    max_subtasks: int | None = None
    system_prompt: str = PLANNER_SYSTEM

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if "{roles}" not in self.system_prompt:
            raise ConfigError("the planner's system_prompt must contain '{roles}' where the role list goes")

    def messages(self, task: Task, roles: Mapping[str, str], context: ReplanContext | None = None) -> list[Message]:
        """The first prompt for ``task`` (and the failure context of a replan)."""
        user = f"Task:\n{task.text}"
        if task.inputs:
            user += f"\n\nInputs:\n{json.dumps(task.inputs, indent=1, default=str)[:4000]}"
        if task.files:
            user += "\n\nFiles in the workspace: " + ", ".join(task.files)
        if context is not None:
            user += "\n\n" + _replan_text(context)
        return [
            {"role": "system", "content": self.system_prompt.format(roles=role_table(roles))},
            {"role": "user", "content": user},
        ]

    async def plan(self, task: Task, roles: Mapping[str, str], context: ReplanContext | None = None) -> Plan:
        """Ask for a plan, re-asking with the validation error; see the class docstring.

        Raises:
            PlanError: no valid plan after ``max_attempts`` replies (names the last error).
        """
        messages = self.messages(task, roles, context)
        names = list(roles)
        errors: list[str] = []
        for attempt in range(self.max_attempts):
            reply, error = await self._ask(messages, names, retry=attempt > 0)
            if isinstance(reply, Plan):
                return reply
            errors.append(error)
            messages = [
                *messages,
                {"role": "assistant", "content": reply},
                {
                    "role": "user",
                    "content": f"That plan is invalid: {error}\n{_FIX}",
                },
            ]
        raise PlanError(
            f"no valid plan after {self.max_attempts} replies; last error: {errors[-1]}"
            + (f" (earlier: {'; '.join(errors[:-1])})" if len(errors) > 1 else "")
            + ". Use a stronger planner model, raise max_attempts, or give a StaticPlanner."
        )

    async def _ask(self, messages: list[Message], roles: list[str], *, retry: bool) -> tuple[Plan | str, str]:
        """One attempt: the valid plan, or (the reply text, the validation error)."""
        model = self.model
        if supports(model, "structured_outputs"):
            model = with_options(
                model, response_format=json_schema_format("plan", plan_schema(roles, self.max_subtasks))
            )
        if self.voter is None:
            temperature = self.temperature
            if retry and self.retry_temperature is not None:
                temperature = self.retry_temperature
            [sample] = await model.sample(
                messages, n=1, temperature=temperature, max_tokens=self.max_tokens, adapter=self.adapter
            )
            try:
                return parse_plan(sample.text, roles, max_subtasks=self.max_subtasks), ""
            except PlanError as err:
                truncated = sample.finish_reason == "length"
                count_red_flag(self.model, "truncated" if truncated else "plan")
                if truncated:
                    return sample.text, f"{err} (the reply hit the limit of {self.max_tokens} tokens: plan less)"
                return sample.text, str(err)
        last: list[tuple[str, str]] = []

        def parse(text: str) -> _Voted:
            try:
                return _Voted(parse_plan(text, roles, max_subtasks=self.max_subtasks))
            except PlanError as err:
                last.append((text, str(err)))
                raise RedFlag("plan", str(err)) from err

        try:
            decision = await self.voter.decide(model, messages, parse)
        except VoteFailed as err:
            count_red_flags(self.model, err.red_flags)
            if last:
                return last[-1]
            return "", f"the planner votes did not agree ({err})"
        count_red_flags(self.model, decision.usage.red_flags)
        return decision.answer.plan, ""


def _replan_text(context: ReplanContext) -> str:
    lines = [f"A previous plan failed (replan {context.attempt}). Failed subtasks:"]
    for f in context.failures:
        lines.append(f"- {f.id} (role {f.role}): {f.instruction[:300]}\n  error: {f.error[:500]}")
    if context.completed:
        lines.append("Completed subtasks (keep id, instruction, role and depends_on unchanged to reuse a result):")
        by_id = context.previous.by_id()
        for sid, result in list(context.completed.items())[:50]:
            s = by_id.get(sid)
            if s is not None:
                lines.append(f"- {json.dumps(s.model_dump())} -> {result[:200]}")
    lines.append("Make a new plan that avoids the failures.")
    return "\n".join(lines)
