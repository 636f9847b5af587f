"""Reading a worker's reply as small models really write it: one answer in three spellings, and tool calls.

An answer is the same whichever way it is spelled: ``{"answer": X}``, a line ``FINAL ANSWER: X`` or
``\\boxed{X}`` (:func:`marked_answer`). Tool calls are read tolerantly (:func:`read_reply`): the first JSON
object of the reply, repaired when its brackets do not balance (stray ``]]}``); the calls in it in the OpenAI
shape (``{"function": {"name": ..., "arguments": ...}}``) or the short one (``{"name": ..., "arguments": ...}``);
arguments written into a copy of the tool's spec (``"parameters": {"properties": {"code": "print(1)"}}``); and a
fenced python block, which is a call of the ``python`` tool (code as an action). A copy of a tool's spec with
no value filled in is not a call: it is dropped, unless it is the one tool the reply names and it takes no
arguments (there is nothing to fill in).

Equal calls are one vote (:class:`ToolCalls`): arguments compare as JSON with sorted keys and no spaces, and the
``code`` of the python tool by its syntax tree (formatting and comments ignored; text that does not parse
compares as text).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mdap.errors import RedFlag
from mdap.jsontext import loads_json, raw_decode_json

from ._pycode import parsed, runnable
from .tools import Tool

__all__ = [
    "Reply",
    "ToolCalls",
    "balance_json",
    "call_key",
    "clean_answer",
    "json_object",
    "marked_answer",
    "python_blocks",
    "read_reply",
]

_FINAL = re.compile(r"final\s*answer\s*\**\s*[:\uff1a]", re.IGNORECASE)  # ASCII or full-width colon
_BOXED = re.compile(r"\\boxed\s*\{")
_TEXT = re.compile(r"\\(?:text|mathrm|textbf)\s*\{([^{}]*)\}")
_SPACE = re.compile(r"\s+")
_JSON_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)
_PY_FENCE = re.compile(r"```(?:python3?|py)[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_ANSWER_FIELD = re.compile(r'"answer"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d[\d.eE+\-]*)')
_SPEC_KEYS = frozenset({"type", "properties", "required", "description", "additionalProperties"})
_DECODER = json.JSONDecoder()


def clean_answer(line: str) -> str:
    """``line`` without markdown emphasis, surrounding quotes or backticks, a trailing full stop (not of an
    abbreviation's last dot pair) or runs of whitespace."""
    answer = _SPACE.sub(" ", line.strip(" \t*`\"'"))
    if answer.endswith(".") and not answer[:-1].rstrip().endswith("."):
        answer = answer[:-1].strip(" \t*`\"'")
    return answer


def _boxed(text: str) -> tuple[int, str] | None:
    """(where, content) of the last ``\\boxed{...}`` whose braces close, or None."""
    for mark in reversed(list(_BOXED.finditer(text))):
        depth, i = 1, mark.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return mark.start(), _TEXT.sub(r"\1", text[mark.end() : i - 1])
    return None


def marked_answer(text: str) -> str | None:
    """The answer ``text`` marks as final: after its last ``FINAL ANSWER:`` (the first non-empty line that
    follows) or inside its last ``\\boxed{...}``, whichever comes last; None when it marks none (or an empty one).

    Markdown emphasis, surrounding quotes or backticks and a trailing full stop are removed and runs of
    whitespace become one space; case and the rest of the punctuation are kept.
    """
    finals = list(_FINAL.finditer(text))
    boxed = _boxed(text)
    if finals and (boxed is None or finals[-1].start() > boxed[0]):
        rest = text[finals[-1].end() :]
        line = next((ln for ln in rest.splitlines() if ln.strip(" *`\"'")), "")
        return clean_answer(line) or None
    if boxed is not None:
        return clean_answer(boxed[1]) or None
    return None


def balance_json(text: str) -> str:
    """``text`` from its first ``{`` to where that object closes, its brackets balanced: a closer that matches no
    open bracket is dropped, one that skips open brackets closes them first, and what is still open at the end
    is closed (an unterminated string too). Small models write ``]]}`` for ``]}`` and stop early."""
    start = text.find("{")
    if start < 0:
        return ""
    out: list[str] = []
    stack: list[str] = []
    in_string = escaped = False
    for ch in text[start:]:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if ch not in stack:
                continue  # a stray closer
            while stack[-1] != ch:
                out.append(stack.pop())
            stack.pop()
            out.append(ch)
            if not stack:
                return "".join(out)
            continue
        out.append(ch)
    if in_string:
        out.append('"')
    out.extend(reversed(stack))
    return "".join(out)


def json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text``: as written (anything after it ignored), else repaired with
    :func:`balance_json`; None when there is none or it cannot be read either way."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _ = raw_decode_json(_DECODER, text, start)
    except ValueError:
        try:
            value = loads_json(balance_json(text))
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def python_blocks(text: str) -> str | None:
    """The code of the fenced python blocks in ``text`` (joined by a newline), or None when there is none."""
    blocks = [b.strip("\n") for b in _PY_FENCE.findall(text) if b.strip()]
    return "\n".join(blocks) if blocks else None


@dataclass(frozen=True, slots=True)
class Reply:
    """What a reply says.

    Attributes:
        answer: the answer in any spelling (JSON ``answer``, ``FINAL ANSWER:``, ``\\boxed{}``), or None.
        calls: tool calls as (name, canonical JSON arguments), in order.
        too_big: the reply asks for the subtask to be split.
        structured: the reply is (or holds) a JSON object, or a python block.
        unfilled: tool calls dropped because they were a copy of a tool's spec with no value filled in.
        code: the calls are the reply's python blocks (no call was written as JSON).
    """

    answer: str | None
    calls: tuple[tuple[str, str], ...] = ()
    too_big: bool = False
    structured: bool = False
    unfilled: int = 0
    code: bool = False


def _schema_like(value: Mapping[str, Any]) -> bool:
    return value.get("type") == "object" and isinstance(value.get("properties"), dict)


def _filled(properties: Any) -> dict[str, Any]:
    """The values a model wrote into a copied schema's properties (a nested schema is no value)."""
    if not isinstance(properties, dict):
        return {}
    return {k: v for k, v in properties.items() if k not in _SPEC_KEYS and not isinstance(v, dict)}


def _call_fn(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object naming the function of a call-shaped ``obj`` (OpenAI or short shape), or None."""
    fn = obj.get("function")
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        return fn
    if isinstance(obj.get("name"), str) and ({"arguments", "parameters"} & obj.keys()):
        return obj
    return None


def _arguments(name: str, fn: Mapping[str, Any], tool: Tool | None) -> dict[str, Any] | None:
    """The arguments of a call, or None when it is an unfilled copy of the tool's spec.

    Raises:
        RedFlag: ``arguments`` is a string that is not JSON, or not an object.
    """
    declared = set((tool.parameters.get("properties") or {}) if tool is not None else {})
    if "arguments" in fn:
        args = fn["arguments"]
        if isinstance(args, str):
            try:
                args = loads_json(args) if args.strip() else {}
            except ValueError:
                raise RedFlag("parse", f"arguments of {name} are not JSON") from None
        if not isinstance(args, dict):
            raise RedFlag("parse", f"arguments of {name} must be a JSON object")
        if _schema_like(args) and not {"type", "properties"} & declared:
            return _filled(args["properties"]) or None
        return {k: v for k, v in args.items() if k not in _SPEC_KEYS or k in declared}
    params = fn.get("parameters")
    if isinstance(params, dict):
        return _filled(params.get("properties")) or None
    return None


def _canonical(name: str, args: Mapping[str, Any]) -> tuple[str, str]:
    return (name, json.dumps(args, sort_keys=True, ensure_ascii=False))


def call_key(name: str, arguments: str, *, python: str = "python") -> tuple[str, str]:
    """What a call is voted as: ``(name, arguments)``, the arguments (JSON text) as JSON with sorted keys and no
    spaces, and the ``code`` of the ``python`` tool replaced by the dump of its syntax tree (read as the tool
    reads it: math signs as operators, debris cut off, :func:`~._pycode.runnable`), so programs that differ only
    in formatting and comments are one vote. Code that does not parse stays text."""
    args = json.loads(arguments)
    code = args.get("code") if name == python and isinstance(args, dict) else None
    tree = _syntax_tree(code) if isinstance(code, str) else None
    if tree is not None:
        args = {**args, "code": {"ast": tree}}
    return (name, json.dumps(args, sort_keys=True, ensure_ascii=False, separators=(",", ":")))


def _syntax_tree(code: str) -> str | None:
    """The dump of ``code``'s syntax tree (no positions), or None when it does not parse."""
    tree = parsed(runnable(code)[0])
    return None if tree is None else ast.dump(tree)


@dataclass(frozen=True, slots=True, eq=False)
class ToolCalls:
    """The tool calls of one reply as a vote: equal (and hashing equal) when their :func:`call_key` s are.

    A vote keeps the first sample of each distinct key, so the calls that run are the first equal sample's, as
    it wrote them.

    Attributes:
        calls: (name, canonical JSON arguments), in order: what runs.
        key: the calls' :func:`call_key` s: what is voted.
    """

    calls: tuple[tuple[str, str], ...]
    key: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, calls: tuple[tuple[str, str], ...], *, python: str = "python") -> ToolCalls:
        """The vote of ``calls`` (``python``: the tool whose ``code`` compares by syntax tree)."""
        return cls(calls, tuple(call_key(name, args, python=python) for name, args in calls))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ToolCalls) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


def _listed_calls(raw: Any, tools: Mapping[str, Tool]) -> tuple[list[tuple[str, str]], list[str]]:
    """The calls of a ``tool_calls`` value and the names of the unfilled spec copies dropped.

    Raises:
        RedFlag: a call has no function name, names an unknown tool, or has unreadable arguments.
    """
    entries = raw if isinstance(raw, list) else [raw]
    calls: list[tuple[str, str]] = []
    unfilled: list[str] = []
    for entry in entries:
        fn = _call_fn(entry) if isinstance(entry, dict) else None
        if fn is None:
            raise RedFlag("parse", "each tool call needs a function name and its arguments")
        name = str(fn["name"])
        if name not in tools:
            raise RedFlag("unknown_tool", f"no tool named {name!r}")
        args = _arguments(name, fn, tools[name])
        if args is None:
            unfilled.append(name)
        else:
            calls.append(_canonical(name, args))
    return calls, unfilled


def _salvaged_calls(text: str, tools: Mapping[str, Tool]) -> tuple[list[tuple[str, str]], list[str]]:
    """Calls of known tools found as complete JSON objects anywhere in ``text`` (an unreadable reply)."""
    calls: list[tuple[str, str]] = []
    unfilled: list[str] = []
    i = text.find("{")
    while i >= 0:
        try:
            value, end = raw_decode_json(_DECODER, text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        fn = _call_fn(value) if isinstance(value, dict) else None
        if fn is None or fn["name"] not in tools:
            i = text.find("{", i + 1)  # look inside it
            continue
        try:
            args = _arguments(fn["name"], fn, tools[fn["name"]])
        except RedFlag:
            args = None
        if args is None:
            unfilled.append(fn["name"])
        else:
            calls.append(_canonical(fn["name"], args))
        i = text.find("{", end)
    return calls, unfilled


def _answer_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    marked = marked_answer(text)
    return marked if marked is not None else text


def read_reply(text: str, tools: Mapping[str, Tool], *, python: str | None = "python") -> Reply:
    """Read a worker's reply: its answer (any spelling), its tool calls, whether it asks to be split.

    Args:
        text: the reply.
        tools: the tools the worker has, by name (calls of other tools are red-flagged).
        python: the tool a fenced python block calls (with ``{"code": ...}``); None: blocks are no calls.

    Raises:
        RedFlag: a call names an unknown tool or has unreadable arguments (``unknown_tool``, ``parse``).
    """
    body = text.strip()
    fenced = _JSON_FENCE.match(body)
    if fenced and not _PY_FENCE.match(body):
        body = fenced.group(1)
    code = python_blocks(body) if python is not None and python in tools else None
    prose = _PY_FENCE.sub("", body) if code is not None else body
    data = json_object(prose)
    unfilled: list[str] = []
    calls: list[tuple[str, str]] = []
    answer: str | None = None
    too_big = False
    if data is not None:
        if "tool_calls" in data:
            calls, unfilled = _listed_calls(data["tool_calls"], tools)
        elif _call_fn(data) is not None:
            calls, unfilled = _listed_calls(data, tools)
        if "answer" in data:
            answer = _answer_text(data["answer"])
        too_big = "too_big" in data
        known = bool(calls or unfilled or too_big or answer is not None)
        if not known and not prose.lstrip().startswith("{"):
            data = None  # prose that happens to contain a JSON object: read as prose
    elif "{" in prose and ('"name"' in prose or '"answer"' in prose):
        calls, unfilled = _salvaged_calls(prose, tools)
        found = _ANSWER_FIELD.search(prose)
        if found:
            answer = _answer_text(json.loads(found.group(1)))
    lone = len(unfilled) == 1 and not tools[unfilled[0]].parameters.get("properties")
    if not calls and code is None and lone:
        calls, unfilled = [_canonical(unfilled[0], {})], []  # the one tool copied takes no argument: a call
    from_code = not calls and code is not None
    if from_code:
        calls = [_canonical(python, {"code": code})]  # type: ignore[arg-type]
    if answer is None:
        answer = marked_answer(prose)
    structured = data is not None or bool(calls or unfilled) or prose.lstrip().startswith("{")
    return Reply(answer, tuple(calls), too_big, structured, len(unfilled), from_code)
