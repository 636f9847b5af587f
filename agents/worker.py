"""The worker: executes one subtask as a microagent with a bounded, voted tool loop.

Context is minimal: the role's system prompt, the worker protocol, the subtask's instruction and the compact
artifacts of its dependencies. Every reply is a vote among samples: tool calls are voted before they run
(only the decided call runs; equal calls are one vote, python code compared by its syntax tree, see
:class:`~.replies.ToolCalls`), and the final answer is voted in canonical form.

The protocol is text, so it works with any :class:`~mdap.models.ChatModel`: the model replies with one JSON
object — ``{"answer": ...}``, ``{"tool_calls": [...]}``, or ``{"too_big": ...}`` when splitting is offered.
Replies are read as small models write them (:mod:`.replies`): an answer may also be spelled ``FINAL ANSWER:
X`` or ``\\boxed{X}``; tool calls are read from broken JSON and copied specs, and a fenced python block is a call
of the python tool. A reply with tool calls runs them: an answer beside them is dropped (and counted as
``answer_dropped``). A reply in no answer spelling is taken whole as the answer, unless the role says otherwise.
A retried subtask never redraws the greedy sample of the failed attempt (see :func:`fresh_voter`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from mdap.errors import RedFlag, SubtaskFailed
from mdap.models import ChatModel, Sample, json_schema_format, supports, with_options
from mdap.types import Message
from mdap.usage import Usage
from mdap.voters import Decision, Voter
from mdap.voters.observe import current_observer, observing

from ._detail import Recorder, vote_detail
from ._pycode import computes_nothing
from .events import EventBus
from .replies import ToolCalls, read_reply
from .roles import WorkerRole
from .tools import Tool, tool_failed
from .work import WorkItem, WorkOutput

__all__ = [
    "RETRY_TEMPERATURE",
    "WORKER_PROTOCOL",
    "Meter",
    "Worker",
    "fresh_voter",
    "render_tool_results",
    "ExchangeStyle",
    "tool_exchange",
]

WORKER_PROTOCOL = """You are a worker. Do exactly the instruction you are given, nothing more.
Reply with one JSON object and nothing else:
{"answer": "<your final answer>"} when you are done."""

_TOOLS_PROTOCOL = """
To call tools instead, reply with their calls and no answer; you then get their results and reply again \
(at most %d tool rounds). For example:
%s
Tools:
%s"""

_PYTHON_BLOCK = """
A fenced ```python block in your reply is run with the python tool, the same as a python call."""

_CODE_PROTOCOL = """Reply with one ```python block: a complete program that computes and prints the result. It runs \
in a fresh process, and you see what it prints."""
"""The first prompt of a role with ``code_actions``. It says nothing of the answer's form: asked for a JSON answer
up front, a small model answers from memory instead of writing the program (Qwen2.5-Coder-0.5B: 8 of 8 did)."""

_OTHER_TOOLS = """
Other tools, called with a reply like %s:
%s"""

RETRY_TEMPERATURE = 0.7
"""The temperature of a retried subtask's samples when its voter samples at 0 (a greedy sample would repeat)."""

_SPLIT_PROTOCOL = """
{"too_big": "<why>"} if the instruction is too big to do well in one go; it will be split into smaller subtasks."""

_SPACE = re.compile(r"\s+")

_QUIET = EventBus()  # no listeners: emits nothing

Action = tuple[str, Any]
"""A voted reply: ("answer", text), ("tools", :class:`~.replies.ToolCalls`) or ("too_big", "")."""


@dataclasses.dataclass(slots=True)
class _Loop:
    """The tool loop's state between rounds: the conversation, the previous round's call keys (a program rerun
    right away prints the same), whether the next reply must act, and what was voted so far."""

    messages: list[Message]
    must_act: bool
    last: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    voted: Usage = dataclasses.field(default_factory=Usage.zero)


class Meter:
    """Wraps a ChatModel and adds up what its samples cost (one meter per subtask, or per module).

    ``usage.red_flags`` counts what its user reports there (the planner's discarded replies and fallbacks, see
    :func:`mdap.planners.count_red_flag`).
    """

    __slots__ = ("calls", "model", "usage")

    def __init__(self, model: ChatModel) -> None:
        self.model = model
        self.calls = 0
        self.usage = Usage.zero()

    def count_red_flags(self, flags: Mapping[str, int]) -> None:
        """Count red flags its user found (they are not the samples' own: those count where they are voted)."""
        self.usage += Usage(red_flags=dict(flags))

    @property
    def native_tools(self) -> bool | None:
        """The wrapped model's ``native_tools`` (see :mod:`mdap.models.options`)."""
        value = getattr(self.model, "native_tools", False)
        return value if value is None else bool(value)

    @property
    def structured_outputs(self) -> bool | None:
        """The wrapped model's ``structured_outputs``."""
        value = getattr(self.model, "structured_outputs", False)
        return value if value is None else bool(value)

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
        **options: Any,
    ) -> list[Sample]:
        """Delegate to the wrapped model (with the optional request fields in ``options``) and count the call."""
        out = await self.model.sample(
            messages, n=n, temperature=temperature, max_tokens=max_tokens, adapter=adapter, **options
        )
        self.calls += 1
        if out:
            first = out[0]
            self.usage += Usage(
                samples=len(out),
                completion_tokens=sum(s.completion_tokens for s in out),
                prompt_tokens=first.prompt_tokens,
                cost=_cost(out),
                model_seconds=first.latency_s,
            )
        return out


def _cost(samples: Sequence[Sample]) -> float | None:
    """The samples' summed cost; None when none had a price set."""
    costs = [s.cost for s in samples if s.cost is not None]
    return sum(costs) if costs else None


class Worker:
    """Executes subtasks of one role.

    Args:
        role: the role.
        model: the role's model (the pipeline resolves the default).
        voter: the role's voter (with the role's adapter applied).

    A compiled pipeline's workers are shared by its runs: each run passes its own events to :meth:`run`.
    """

    def __init__(self, role: WorkerRole, model: ChatModel, voter: Voter) -> None:
        self.role = role
        self.model = model
        self.voter = voter
        self.tools: dict[str, Tool] = {t.name: t for t in role.tools}
        self._specs = [t.spec() for t in role.tools]
        head = role.system_prompt.strip() + "\n\n" if role.system_prompt.strip() else ""
        base = head + WORKER_PROTOCOL
        self._system_plain = base
        if role.code_actions:
            self._system_tools = head + _CODE_PROTOCOL
            others = [t for t in role.tools if t.name != "python"]
            if others:
                listing = "\n".join(_tool_line(t) for t in others)
                self._system_tools += _OTHER_TOOLS % (_example_call(others), listing)
        elif self.tools:
            listing = "\n".join(_tool_line(t) for t in role.tools)
            self._system_tools = base + _TOOLS_PROTOCOL % (role.max_tool_rounds, _example_call(role.tools), listing)
            if "python" in self.tools:
                self._system_tools += _PYTHON_BLOCK
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

    async def run(self, item: WorkItem, events: EventBus | None = None) -> WorkOutput:
        """Execute ``item``: vote each reply, run decided tool calls, return the voted answer.

        ``events`` (the run's bus) gets a ``vote_decided`` event per vote and a ``red_flag`` event per vote with
        red flags; None = no events.

        Raises:
            VoteFailed: a reply could not be decided within the voter's sample cap.
            SubtaskFailed: the tool loop used every round without an answer.
            ModelError: the model backend failed.
        """
        meter = Meter(self.model)
        out = WorkOutput(answer=None)
        events = events or _QUIET
        given = self._passed_through(item)
        if given is not None:
            out.answer = given
            if events.active:
                events.emit("vote_decided", id=item.id, role=self.role.name, action="pass_through", samples=0, votes=[])
            return out
        rounds = self.role.max_tool_rounds if self.tools else 0
        loop = _Loop(self.messages(item, tools=rounds > 0), must_act=self.role.must_act)
        voter = self.voter if item.attempt <= 1 else fresh_voter(self.voter)
        for round_ in range(rounds + 1):
            allow_tools = round_ < rounds
            options = self._request_options(allow_tools, loop.must_act, item)
            kind, payload = await self._vote(item, voter, with_options(meter, **options), loop, allow_tools, events)
            out.votes += 1
            if kind == "answer":
                out.answer = payload
                break
            if kind == "too_big":
                out.too_big = "the worker marked the subtask as too big"
                break
            style: ExchangeStyle = "native" if "tools" in options else "code" if self.role.code_actions else "text"
            out.answer = await self._act(item, (round_, rounds), payload, loop, style, events)
            out.tool_calls += len(payload.calls)
            if out.answer is not None:
                break
        else:  # pragma: no cover -- the last round forbids tool calls, so the loop always breaks
            raise SubtaskFailed(f"subtask {item.id}: no answer after {rounds} tool rounds")
        # samples, red flags and completion tokens as voted; the rest as the backend reported (voters do not
        # count prompt tokens, cost or latency)
        billed = meter.usage
        voted = loop.voted
        out.usage = Usage(
            voted.samples,
            voted.red_flags,
            voted.completion_tokens,
            billed.prompt_tokens,
            billed.cost,
            billed.model_seconds,
        )
        return out

    async def _vote(
        self, item: WorkItem, voter: Voter, asked: ChatModel, loop: _Loop, allow_tools: bool, events: EventBus
    ) -> Action:
        """Decide one reply of the tool loop (counting its usage and red flags in ``loop``), with its events."""
        recorder = Recorder(current_observer()) if events.detail == "full" else None
        with observing(recorder) if recorder is not None else contextlib.nullcontext():
            decision: Decision[Action] = await voter.decide(
                asked, loop.messages, self._parser(allow_tools, item, loop.dropped, loop.last, loop.must_act)
            )
        usage = decision.usage
        if loop.dropped:
            usage += Usage(red_flags=dict(loop.dropped))
            loop.dropped.clear()
        loop.voted += usage
        if usage.red_flags and events.active:
            events.emit("red_flag", id=item.id, role=self.role.name, flags=dict(usage.red_flags))
        if events.active:
            events.emit(
                "vote_decided",
                id=item.id,
                role=self.role.name,
                action=decision.answer[0],
                samples=usage.samples,
                votes=list(decision.votes),
                **(vote_detail(recorder.last) if recorder is not None else {}),
            )
        return decision.answer

    async def _act(
        self,
        item: WorkItem,
        rounds: tuple[int, int],
        decided: ToolCalls,
        loop: _Loop,
        style: ExchangeStyle,
        events: EventBus,
    ) -> str | None:
        """Run the decided calls of round ``rounds[0]`` (of ``rounds[1]``) and update ``loop`` for the next round;
        the answer when the role reads it off their output (:attr:`WorkerRole.answer_from_output`), else None."""
        round_, total = rounds
        results = await self._call_tools(item, round_, decided, events)
        given = self._from_output(item, decided, results)
        if given is not None:
            return given
        loop.last = list(decided.key)
        loop.must_act = self.role.must_act and all(tool_failed(text) for _, _, text in results)  # until one works
        loop.messages = [*loop.messages, *tool_exchange(round_, decided, results, total - round_ - 1, style=style)]
        return None

    async def _call_tools(
        self, item: WorkItem, round_: int, decided: ToolCalls, events: EventBus
    ) -> list[tuple[str, str, str]]:
        """Run the decided calls in order: their (call id, tool name, output)."""
        results = []
        for i, (name, args) in enumerate(decided.calls):
            arguments = json.loads(args)
            output = await self.tools[name].call(arguments)
            results.append((f"call_{round_}_{i}", name, output))
            if events.detail == "full":
                events.emit("tool_called", id=item.id, role=self.role.name, name=name, input=arguments, output=output)
        return results

    def _request_options(self, allow_tools: bool, must_act: bool, item: WorkItem) -> dict[str, Any]:
        """The optional request fields of one round, where the model takes them (:mod:`mdap.models.options`).

        A tool round goes out with native ``tools``: ``tool_choice`` "required" when the round ``must_act`` (a
        role that must act, in its first round and after a round whose calls all failed), "auto" otherwise (the
        text protocol reads what comes back either way). A round that can only
        answer is constrained to ``{"answer": "..."}`` by a JSON schema; a tool round without native tools to
        the answer or the calls of the role's tools. Splitting (``too_big``) is not in the schemas: a subtask that
        may be split goes unconstrained.
        """
        options: dict[str, Any] = {}
        if allow_tools and self.role.code_actions:
            return options  # a python block is no JSON: nothing constrains a round that may run code
        if allow_tools and supports(self.model, "native_tools"):
            options["tools"] = self._specs
            options["tool_choice"] = "required" if must_act else "auto"
            return options
        if supports(self.model, "structured_outputs") and not item.may_split:
            schema = _reply_schema(self.role.tools) if allow_tools else _ANSWER_SCHEMA
            options["response_format"] = json_schema_format("worker_reply", schema)
        return options

    def _from_output(self, item: WorkItem, decided: ToolCalls, results: Sequence[tuple[str, str, str]]) -> str | None:
        """The role's answer read off the output of a round of one python call that worked, or None."""
        hook = self.role.answer_from_output
        if hook is None or len(results) != 1 or decided.calls[0][0] != "python" or tool_failed(results[0][2]):
            return None
        return self._given_answer(hook(item, results[0][2]))

    def _passed_through(self, item: WorkItem) -> str | None:
        """The role's pass-through answer for ``item`` (canonicalized), or None to ask the model."""
        return self._given_answer(self.role.pass_through(item) if self.role.pass_through is not None else None)

    def _given_answer(self, given: str | None) -> str | None:
        """An answer a role hook gave without the model, canonicalized; None when there is none, or when it is no
        valid answer of this role after all (the answer parser red-flags it): the model is asked then."""
        if given is None:
            return None
        try:
            return _answer(given, self.role.answer_parser, self.role.max_answer_chars)
        except RedFlag:
            return None

    def _parser(
        self, allow_tools: bool, item: WorkItem, dropped: dict[str, int], last: list[tuple[str, str]], must_act: bool
    ) -> Any:
        role = self.role
        acts_in_code = must_act and allow_tools and role.code_actions
        canon = role.answer_parser
        tools = self.tools
        limit = role.max_answer_chars
        plain = role.plain_answers

        def parse(text: str) -> Action:
            reply = read_reply(text, tools)
            if reply.calls:
                if acts_in_code and all(_constant_program(name, args) for name, args in reply.calls):
                    raise RedFlag("must_act", "a program that only prints constants (an answer from memory)")
                if allow_tools:
                    calls = ToolCalls.of(reply.calls)
                    if last and list(calls.key) == last and all(name == "python" for name, _ in reply.calls):
                        raise RedFlag("repeated_call", "runs the programs of the round before again (same output)")
                    if reply.answer is not None:
                        dropped["answer_dropped"] = dropped.get("answer_dropped", 0) + 1
                    return ("tools", calls)
                if reply.answer is None and not (reply.code and plain):
                    raise RedFlag("tool_rounds", "tool call after the last tool round")
            if acts_in_code:  # the text protocol's form of tool_choice="required"
                raise RedFlag("must_act", "no program where one must run (first, or after programs that failed)")
            if reply.answer is not None:
                return ("answer", _answer(reply.answer, canon, limit))
            if reply.too_big:
                if not item.may_split:
                    raise RedFlag("parse", "too_big is not offered for this subtask")
                return ("too_big", "")
            if reply.unfilled:
                raise RedFlag("parse", "tool calls with no argument values (a copy of the tool spec)")
            if reply.structured and not (reply.code and not allow_tools):
                raise RedFlag("parse", "a JSON reply without answer, tool_calls or too_big (or not JSON at all)")
            if not plain:
                raise RedFlag("format", 'no answer in the reply: no {"answer": ...}, FINAL ANSWER: or \\boxed{}')
            return ("answer", _answer(text.strip(), canon, limit))

        return parse


def _constant_program(name: str, arguments: str) -> bool:
    """Whether a call runs a python program that only prints constants (:func:`~._pycode.computes_nothing`)."""
    code = json.loads(arguments).get("code") if name == "python" else None
    return isinstance(code, str) and computes_nothing(code)


def _answer(text: str, canon: Any, limit: int) -> str:
    if len(text) > limit:
        raise RedFlag("too_long", f"answer of {len(text)} characters (limit {limit})")
    if canon is not None:
        return str(canon(text))
    out = _SPACE.sub(" ", text).strip()
    if not out:
        raise RedFlag("parse", "empty answer")
    return out


def fresh_voter(voter: Voter) -> Voter:
    """``voter`` for a retry: no greedy first sample (``first_temperature`` dropped) and, when it samples at 0,
    :data:`RETRY_TEMPERATURE` instead, so the retry does not redraw the sample that failed. A voter that is not a
    dataclass with these fields is returned as it is."""
    if not dataclasses.is_dataclass(voter) or isinstance(voter, type):
        return voter
    names = {f.name for f in dataclasses.fields(voter)}
    changes: dict[str, Any] = {}
    if "first_temperature" in names and getattr(voter, "first_temperature", None) is not None:
        changes["first_temperature"] = None
    if "temperature" in names and getattr(voter, "temperature", 1.0) == 0:
        changes["temperature"] = RETRY_TEMPERATURE
    return dataclasses.replace(voter, **changes) if changes else voter


_ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


def _reply_schema(tools: Sequence[Tool]) -> dict[str, Any]:
    """A reply that answers, or calls the given tools with their own argument schemas (no ``pattern``)."""
    call = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"enum": [t.name]}, "arguments": dict(t.parameters)},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for t in tools
        ]
    }
    calls = {
        "type": "object",
        "properties": {"tool_calls": {"type": "array", "items": call, "minItems": 1}},
        "required": ["tool_calls"],
        "additionalProperties": False,
    }
    return {"anyOf": [_ANSWER_SCHEMA, calls]}


def _tool_line(tool: Tool) -> str:
    params = ", ".join(tool.parameters.get("properties") or {})
    return f"- {tool.name}({params}): {tool.description}"


def _example_call(tools: Sequence[Tool]) -> str:
    """One concrete call: python's when the role has it, else the first tool's with placeholder values."""
    by_name = {t.name: t for t in tools}
    if "python" in by_name:
        name, args = "python", {"code": "print(sum(range(1, 11)))"}
    else:
        tool = tools[0]
        name, args = tool.name, {p: f"<{p}>" for p in tool.parameters.get("required") or []}
    return json.dumps({"tool_calls": [{"name": name, "arguments": args}]})


ExchangeStyle = Literal["native", "code", "text"]
"""How a tool round goes back to the model: see :func:`tool_exchange`."""


def tool_exchange(
    round_: int,
    decided: ToolCalls,
    results: Sequence[tuple[str, str, str]],
    rounds_left: int,
    *,
    style: ExchangeStyle = "text",
) -> list[Message]:
    """The messages a tool round adds: the assistant's calls and their results, then what to do next.

    ``style``:

    - ``"native"`` (the round went out with native ``tools``): the OpenAI form, an assistant message with
      ``tool_calls`` and one ``tool`` message per result, which the server's chat template renders as the model
      was trained to read them.
    - ``"code"`` (a role with ``code_actions`` whose calls were all python): the programs as python blocks, and
      what they printed.
    - ``"text"``: the text protocol's, the calls as JSON text and the results in a user message
      (:func:`render_tool_results`).
    """
    if style == "code" and all(name == "python" for name, _ in decided.calls):
        programs = "\n\n".join(f"```python\n{json.loads(args)['code']}\n```" for _, args in decided.calls)
        shown = "\n\n".join(f"Output:\n```\n{text.rstrip()}\n```" for _, _, text in results)
        failed = all(tool_failed(text) for _, _, text in results)
        return [
            {"role": "assistant", "content": programs},
            {"role": "user", "content": f"{shown}\n{_next_step(rounds_left, code=True, failed=failed)}"},
        ]
    if style != "native":
        return [
            {"role": "assistant", "content": _render_calls(round_, decided.calls)},
            {"role": "user", "content": render_tool_results(results, rounds_left)},
        ]
    calls = [
        {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
        for (cid, _, _), (name, args) in zip(results, decided.calls, strict=True)
    ]
    out: list[Message] = [{"role": "assistant", "content": "", "tool_calls": calls}]
    out += [{"role": "tool", "tool_call_id": cid, "content": text} for cid, _, text in results]
    out.append({"role": "user", "content": _next_step(rounds_left)})
    return out


def _next_step(rounds_left: int, *, code: bool = False, failed: bool = False) -> str:
    more = f"{rounds_left} more program{'s' if rounds_left > 1 else ''} at most"
    if rounds_left > 0 and code and failed:
        return f"The program failed or printed nothing: reply with a fixed ```python block ({more})."
    if rounds_left > 0 and code:
        return (
            'If the output gives the result, reply with one JSON object and nothing else: {"answer": "<the result>"}. '
            f"If it printed the wrong thing, reply with a fixed ```python block ({more})."
        )
    if rounds_left > 0:
        return (
            "Use these results: call a tool again (fix a call that failed), or reply "
            '{"answer": "<your final answer>"} when they give the answer.'
        )
    return 'Reply now with {"answer": "<your final answer>"}, taken from the results above; no more tool calls.'


def _render_calls(round_: int, calls: tuple[tuple[str, str], ...]) -> str:
    return json.dumps(
        {
            "tool_calls": [
                {"id": f"call_{round_}_{i}", "name": name, "arguments": json.loads(args)}
                for i, (name, args) in enumerate(calls)
            ]
        },
        ensure_ascii=False,
    )


def render_tool_results(results: Sequence[tuple[str, str, str]], rounds_left: int) -> str:
    """The user message that returns tool results (OpenAI ``tool`` messages, as JSON lines)."""
    lines = [
        json.dumps({"role": "tool", "tool_call_id": cid, "name": name, "content": text}) for cid, name, text in results
    ]
    return "Tool results:\n" + "\n".join(lines) + "\n" + _next_step(rounds_left)
