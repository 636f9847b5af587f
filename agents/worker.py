"""The worker: executes one subtask as a microagent with a bounded, voted tool loop.

Context is minimal: the role's system prompt, the worker protocol, the subtask's instruction and the compact
artifacts of its dependencies. Every reply is a vote among samples: tool calls are voted before they run
(only the decided call runs), and the final answer is voted in canonical form.

The protocol is text, so it works with any :class:`~mdap.models.ChatModel`: the model replies with one JSON
object — ``{"answer": ...}``, ``{"tool_calls": [...]}`` in the OpenAI tool-calling format, or ``{"too_big":
...}`` when splitting is offered. A reply that is not JSON at all is taken as a plain final answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from mdap.errors import RedFlag, SubtaskFailed
from mdap.models import ChatModel, Sample
from mdap.types import Message
from mdap.voters import Decision, Voter

from .events import EventBus
from .roles import WorkerRole
from .tools import Tool
from .work import WorkItem, WorkOutput

__all__ = ["WORKER_PROTOCOL", "Meter", "Worker", "render_tool_results"]

WORKER_PROTOCOL = """You are a worker. Do exactly the instruction you are given, nothing more.
Reply with one JSON object and nothing else:
{"answer": "<your final answer>"} when you are done."""

_TOOLS_PROTOCOL = """
{"tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "<tool>", "arguments": "<JSON object>"}}]} \
to call tools; you then get their results and reply again. You have at most %d tool rounds.
Tools (OpenAI function format):
%s"""

_SPLIT_PROTOCOL = """
{"too_big": "<why>"} if the instruction is too big to do well in one go; it will be split into smaller subtasks."""

_SPACE = re.compile(r"\s+")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)

Action = tuple[str, Any]
"""A voted reply: ("answer", text), ("tools", ((name, canonical JSON arguments), ...)) or ("too_big", "")."""


class Meter:
    """Wraps a ChatModel and adds up what its samples cost (one meter per subtask, or per module)."""

    __slots__ = ("calls", "completion_tokens", "cost", "model", "prompt_tokens", "samples", "seconds")

    def __init__(self, model: ChatModel) -> None:
        self.model = model
        self.calls = 0
        self.samples = 0
        self.completion_tokens = 0
        self.prompt_tokens = 0
        self.cost = 0.0
        self.seconds = 0.0

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
    ) -> list[Sample]:
        """Delegate to the wrapped model and count the call."""
        out = await self.model.sample(messages, n=n, temperature=temperature, max_tokens=max_tokens, adapter=adapter)
        self.calls += 1
        if out:
            self.seconds += out[0].latency_s
            self.samples += len(out)
            self.prompt_tokens += out[0].prompt_tokens
            for s in out:
                self.cost += s.cost
                self.completion_tokens += s.completion_tokens
        return out


class Worker:
    """Executes subtasks of one role.

    Args:
        role: the role.
        model: the role's model (the pipeline resolves the default).
        voter: the role's voter (with the role's adapter applied).
        events: where vote_decided and red_flag events go.
    """

    def __init__(self, role: WorkerRole, model: ChatModel, voter: Voter, events: EventBus | None = None) -> None:
        self.role = role
        self.model = model
        self.voter = voter
        self.events = events or EventBus()
        self.tools: dict[str, Tool] = {t.name: t for t in role.tools}
        base = (role.system_prompt.strip() + "\n\n" if role.system_prompt.strip() else "") + WORKER_PROTOCOL
        self._system_plain = base
        if self.tools:
            specs = json.dumps([t.spec() for t in role.tools])
            self._system_tools = base + _TOOLS_PROTOCOL % (role.max_tool_rounds, specs)
        else:
            self._system_tools = base

    def messages(self, item: WorkItem, *, tools: bool) -> list[Message]:
        """The first prompt of ``item``."""
        system = self._system_tools if tools else self._system_plain
        if item.may_split:
            system += _SPLIT_PROTOCOL
        user = "Instruction: " + item.instruction
        if item.artifacts:
            lines = [f"[{a.id}] {a.text}" if a.ok else f"[{a.id}] FAILED: {a.text}" for a in item.artifacts]
            user += "\n\nResults of the subtasks this one depends on:\n" + "\n".join(lines)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    async def run(self, item: WorkItem) -> WorkOutput:
        """Execute ``item``: vote each reply, run decided tool calls, return the voted answer.

        Raises:
            VoteFailed: a reply could not be decided within the voter's sample cap.
            SubtaskFailed: the tool loop used every round without an answer.
            ModelError: the model backend failed.
        """
        meter = Meter(self.model)
        out = WorkOutput(answer=None)
        rounds = self.role.max_tool_rounds if self.tools else 0
        messages = self.messages(item, tools=rounds > 0)
        events = self.events
        for round_ in range(rounds + 1):
            allow_tools = round_ < rounds
            decision: Decision[Action] = await self.voter.decide(meter, messages, self._parser(allow_tools, item))
            out.votes += 1
            out.samples += decision.samples
            out.completion_tokens += decision.completion_tokens
            if decision.red_flags:
                for kind, c in decision.red_flags.items():
                    out.red_flags[kind] = out.red_flags.get(kind, 0) + c
                if events.active:
                    events.emit("red_flag", id=item.id, role=self.role.name, flags=dict(decision.red_flags))
            kind, payload = decision.answer
            if events.active:
                events.emit(
                    "vote_decided",
                    id=item.id,
                    role=self.role.name,
                    action=kind,
                    samples=decision.samples,
                    votes=list(decision.votes),
                )
            if kind == "answer":
                out.answer = payload
                break
            if kind == "too_big":
                out.too_big = "the worker marked the subtask as too big"
                break
            calls = [(name, json.loads(args)) for name, args in payload]
            results = []
            for i, (name, args) in enumerate(calls):
                results.append((f"call_{round_}_{i}", name, await self.tools[name].call(args)))
            out.tool_calls += len(calls)
            messages = [
                *messages,
                {"role": "assistant", "content": _render_calls(round_, payload)},
                {"role": "user", "content": render_tool_results(results, rounds - round_ - 1)},
            ]
        else:  # pragma: no cover -- the last round forbids tool calls, so the loop always breaks
            raise SubtaskFailed(f"subtask {item.id}: no answer after {rounds} tool rounds")
        out.cost = meter.cost
        out.model_seconds = meter.seconds
        out.prompt_tokens = meter.prompt_tokens  # voters do not count prompt tokens; the backend's samples do
        return out

    def _parser(self, allow_tools: bool, item: WorkItem) -> Any:
        role = self.role
        canon = role.answer_parser
        tools = self.tools
        limit = role.max_answer_chars

        def parse(text: str) -> Action:
            body = text.strip()
            fenced = _FENCE.match(body)
            if fenced:
                body = fenced.group(1)
            if not body.startswith("{"):
                return ("answer", _answer(body, canon, limit))
            try:
                data = json.loads(body)
            except ValueError as err:
                raise RedFlag("parse", f"reply starts like JSON but is not: {err}") from None
            if not isinstance(data, dict):
                raise RedFlag("parse", "reply must be a JSON object")
            if "answer" in data:
                value = data["answer"]
                return ("answer", _answer(value if isinstance(value, str) else json.dumps(value), canon, limit))
            if "tool_calls" in data:
                if not allow_tools:
                    raise RedFlag("tool_rounds", "tool call after the last tool round")
                return ("tools", _canonical_calls(data["tool_calls"], tools))
            if "too_big" in data:
                if not item.may_split:
                    raise RedFlag("parse", "too_big is not offered for this subtask")
                return ("too_big", "")
            raise RedFlag("parse", "JSON reply without answer, tool_calls or too_big")

        return parse


def _answer(text: str, canon: Any, limit: int) -> str:
    if len(text) > limit:
        raise RedFlag("too_long", f"answer of {len(text)} characters (limit {limit})")
    if canon is not None:
        return str(canon(text))
    out = _SPACE.sub(" ", text).strip()
    if not out:
        raise RedFlag("parse", "empty answer")
    return out


def _canonical_calls(raw: Any, tools: dict[str, Tool]) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        raise RedFlag("parse", "tool_calls must be a non-empty list")
    calls = []
    for call in raw:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            raise RedFlag("parse", "each tool call needs a 'function' object")
        name = fn.get("name")
        if name not in tools:
            raise RedFlag("unknown_tool", f"no tool named {name!r}")
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                raise RedFlag("parse", f"arguments of {name} are not JSON") from None
        if not isinstance(args, dict):
            raise RedFlag("parse", f"arguments of {name} must be a JSON object")
        calls.append((str(name), json.dumps(args, sort_keys=True)))
    return tuple(calls)


def _render_calls(round_: int, calls: tuple[tuple[str, str], ...]) -> str:
    return json.dumps(
        {
            "tool_calls": [
                {"id": f"call_{round_}_{i}", "type": "function", "function": {"name": name, "arguments": args}}
                for i, (name, args) in enumerate(calls)
            ]
        }
    )


def render_tool_results(results: Sequence[tuple[str, str, str]], rounds_left: int) -> str:
    """The user message that returns tool results (OpenAI ``tool`` messages, as JSON lines)."""
    lines = [
        json.dumps({"role": "tool", "tool_call_id": cid, "name": name, "content": text}) for cid, name, text in results
    ]
    tail = "Reply again." if rounds_left > 0 else "No tool rounds are left: reply with your final answer now."
    return "Tool results:\n" + "\n".join(lines) + "\n" + tail
