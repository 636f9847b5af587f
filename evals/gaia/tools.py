"""The GAIA worker tools besides python: ``calculator`` (safe arithmetic) and ``read_attachment``."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import math
import operator
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mdap.agents import Tool
from mdap.errors import ToolError
from mdap.jsontext import loads_json

__all__ = ["attachment_tool", "calculate", "calculator_tool", "file_head"]

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "floor": math.floor,
    "ceil": math.ceil,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_MAX_EXPONENT = 10_000
_MAX_LENGTH = 500


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > _MAX_EXPONENT or (abs(left) > 10**100 and right > 1)):
            raise ToolError("the power is too large for the calculator; use the python tool")
        return _BINARY[type(node.op)](left, right)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_eval(a) for a in node.args))
    allowed = "numbers, + - * / // % **, parentheses, pi, e and " + ", ".join(sorted(_FUNCTIONS))
    raise ToolError(f"the calculator only takes {allowed}; got {ast.dump(node)[:80]}")


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression safely and return the value as text (floats to 15 significant digits).

    Raises:
        ToolError: the expression is not arithmetic, is too long, or fails (division by zero, ...).
    """
    text = expression.strip().replace("^", "**").replace("\u00d7", "*").replace("\u00f7", "/")  # x and divide signs
    if not text or len(text) > _MAX_LENGTH:
        raise ToolError(f"give an arithmetic expression of 1 to {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise ToolError(f"not an arithmetic expression: {err.msg}") from None
    try:
        value = _eval(tree)
    except (ArithmeticError, ValueError, TypeError) as err:
        raise ToolError(f"{type(err).__name__}: {err}") from None
    if isinstance(value, float):
        return format(value, ".15g")
    return str(value)


def calculator_tool() -> Tool:
    """``calculator``: evaluates one arithmetic expression (``{"expression": "1.5 * (2 + 3)"}``)."""

    async def run(args: dict[str, Any]) -> str:
        return calculate(str(args["expression"]))

    return Tool(
        "calculator",
        "Evaluate an arithmetic expression: numbers, + - * / // % ** (or ^), parentheses, pi, e, "
        "abs round min max sqrt log log10 exp floor ceil sin cos tan.",
        {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
        run,
    )


_MAX_BYTES = 16 << 20
_HEAD_BYTES = 1 << 20
"""What :func:`file_head` reads of a file (a JSON file is pretty-printed whole when it fits)."""


def _read_plain(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of ``path`` if it is still a plain file: not a symlink (not followed), not a
    hardlink, not a FIFO or device; the python tool may have replaced the copy in the workspace."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ToolError(f"{path.name} is no longer in the working directory") from None
    except OSError as err:
        kind = "a symlink" if path.is_symlink() else f"not readable ({err.strerror or err})"
        raise ToolError(f"refused: {path.name} is {kind}; the attachment is read only as a plain file") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ToolError(f"refused: {path.name} is not a regular file any more")
        if st.st_nlink > 1:
            raise ToolError(f"refused: {path.name} is hardlinked ({st.st_nlink} names); it may be a file elsewhere")
        return f.read(limit)


def _as_text(path: Path, data: bytes) -> str | None:
    """An attachment's bytes as text (JSON pretty-printed, so its structure shows), or None for a binary file."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if path.suffix.lower() == ".json":
        with contextlib.suppress(ValueError):  # not valid JSON after all: the text as it is
            text = json.dumps(loads_json(text), indent=1, ensure_ascii=False)
    return text


def attachment_tool(attachment: Path | None, *, max_chars: int = 12_000) -> Tool:
    """``read_attachment``: returns the question's attached file as text (JSON pretty-printed).

    Args:
        attachment: the attached file (a copy in the worker's workspace), or None for a question without one.
        max_chars: longer files are cut, with a note saying how to read the rest (the python tool).
    """

    async def run(args: dict[str, Any]) -> str:
        if attachment is None:
            raise ToolError("this question has no attached file")
        data = await asyncio.to_thread(_read_plain, attachment, _MAX_BYTES)
        text = _as_text(attachment, data)
        if text is None:
            raise ToolError(
                f"{attachment.name} is a binary file of {len(data)} bytes; read it with the python tool, "
                f"e.g. open({attachment.name!r}, 'rb')"
            )
        if len(text) > max_chars:
            return text[:max_chars] + f"\n...(cut at {max_chars} of {len(text)} characters; read the rest with python)"
        return f"{attachment.name}:\n{text}"

    return Tool(
        "read_attachment",
        "Read the file attached to the question (text, CSV, JSON). It is also in the working directory, "
        "so the python tool can open it by name.",
        {"type": "object", "properties": {}, "required": []},
        run,
    )


def file_head(path: Path, *, max_lines: int = 15, max_chars: int = 1_500) -> str:
    """The beginning of an attached file, for a prompt: its first ``max_lines`` lines (JSON pretty-printed
    first) and at most ``max_chars`` characters, with a note when there is more; a binary file is named as one.

    A small model that writes a program for a file it has not seen guesses its columns and keys (the GAIA mini
    CSV was read as columns "Region" and "Units Sold", which it does not have).

    Raises:
        ToolError: the file is not a plain file (see :func:`attachment_tool`).
    """
    data = _read_plain(path, _HEAD_BYTES)
    text = _as_text(path, data)
    if text is None:
        return f"(a binary file of {len(data)} bytes{' or more' if len(data) == _HEAD_BYTES else ''})"
    lines = text.splitlines()
    first = "\n".join(lines[:max_lines])
    head = first[:max_chars]
    if len(lines) > max_lines or len(head) < len(first):
        head += f"\n... ({len(lines)} lines in all)"
    return head
