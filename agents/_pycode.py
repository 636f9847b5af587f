"""Model-written Python as it is written: math signs (multiplication sign, division sign, minus sign, ...)
turned into Python operators, and the debris of the JSON or tags around a tool call cut off its end.

Small models write ``17 \u00d7 23 + 144 \u00f7 12`` in code; Python refuses the whole program for one such sign.
The signs are translated outside string literals and comments only (text in quotes keeps them), by a scanner of
Python's literal syntax rather than :mod:`tokenize`, whose handling of invalid characters differs between Python
versions. Signs with no one-token translation (the square root sign) are explained when the program fails.

Small models also close a tool call's JSON inside its code string: ``print(3 * 2160)}`` (measured on
Qwen2.5-Coder-0.5B through vLLM's hermes parser), or write the closing tag into it (``...)}}</tool_call> {"``).
:func:`runnable` cuts such an end off when the program does not parse with it and does without it; it never adds
or changes anything else.
"""

from __future__ import annotations

import ast
import re

__all__ = [
    "OPERATORS",
    "ascii_operators",
    "computes_nothing",
    "explain_failure",
    "parsed",
    "runnable",
    "without_debris",
]

OPERATORS = {
    "\u00d7": "*",  # multiplication sign
    "\u00f7": "/",  # division sign
    "\u2212": "-",  # minus sign
    "\u2013": "-",  # en dash
    "\u00b7": "*",  # middle dot
    "\u22c5": "*",  # dot operator
    "\u2217": "*",  # asterisk operator
    "\u2215": "/",  # division slash
    "\u2264": "<=",  # less-than or equal
    "\u2265": ">=",  # greater-than or equal
    "\u2260": "!=",  # not equal
    "\u00b2": "**2",  # superscript two
    "\u00b3": "**3",  # superscript three
}
"""Math signs and the Python operator each becomes."""

_CLOSERS = "})]\"'"
"""What a tool call's JSON leaves at the end of its code: closing braces, brackets, parentheses and quotes."""
_MAX_DEBRIS = 8
"""At most this many such characters are cut (more is not debris but a broken program, left for Python to report)."""
_TAG = re.compile(r"</?tool_call>")

_INVALID = re.compile(r"invalid (?:character|non-printable character) '(.)'")


def ascii_operators(code: str) -> str:
    """``code`` with the signs of :data:`OPERATORS` replaced outside string literals and comments."""
    if not any(c in OPERATORS for c in code):
        return code
    out: list[str] = []
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if c == "#":
            end = code.find("\n", i)
            end = n if end < 0 else end
            out.append(code[i:end])
            i = end
        elif c in "'\"":
            quote = code[i : i + 3] if code[i : i + 3] in ('"""', "'''") else c
            j = i + len(quote)
            while j < n and not code.startswith(quote, j):
                if code[j] == "\\":
                    j += 1
                elif len(quote) == 1 and code[j] == "\n":
                    break  # an unterminated one-line string: Python reports it
                j += 1
            j = min(n, j + len(quote)) if j < n and code.startswith(quote, j) else j
            out.append(code[i:j])
            i = j
        else:
            out.append(OPERATORS.get(c, c))
            i += 1
    return "".join(out)


def explain_failure(output: str) -> str:
    """A hint for a program that failed on a character Python does not take, or ``""``."""
    found = _INVALID.search(output)
    if found is None:
        return ""
    sign = found.group(1)
    if sign == "\u221a":
        return "\n[hint: Python has no \u221a sign: write math.sqrt(x) (after import math) or x ** 0.5]"
    return (
        f"\n[hint: Python takes only ASCII operators; replace {sign!r} "
        "(* for multiplication, / for division, - for minus, ** for powers)]"
    )


def parsed(code: str) -> ast.Module | None:
    """The syntax tree of ``code``, or None when it does not parse."""
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # not Python, a NUL byte, nesting too deep
        return None


def without_debris(code: str) -> tuple[str, str]:
    """``code`` without the tool-call debris at its end, and the text cut (``""`` when nothing was).

    Code that parses is returned as it is. Otherwise everything from a ``<tool_call>`` or ``</tool_call>`` tag
    on is cut, then up to :data:`_MAX_DEBRIS` closing characters (``} ] ) " '``) at the end, one by one; the
    shortest cut that parses is taken. When no cut parses, ``code`` is returned as it is (Python reports it).
    """
    if parsed(code) is not None:
        return code, ""
    tag = _TAG.search(code)
    head = code[: tag.start()] if tag else code
    body = head.rstrip()
    for _ in range(_MAX_DEBRIS + 1):
        if body.strip() and parsed(body) is not None:
            return body, code[len(body) :].strip()
        if not body or body[-1] not in _CLOSERS:
            break
        body = body[:-1].rstrip()
    return code, ""


def runnable(code: str) -> tuple[str, str]:
    """``code`` as the python tool runs it: math signs as operators (:func:`ascii_operators`), then
    :func:`without_debris`; with the text cut off (``""`` for none)."""
    return without_debris(ascii_operators(code))


def computes_nothing(code: str) -> bool:
    """Whether ``code`` (as :func:`runnable` makes it) only prints or states constants: ``print("Monday")``, a
    bare string. Such a program is an answer from memory written as a program (a small model asked to compute
    the day of a date printed ``"1 January 2000 fell on Monday"``). Code that does not parse is not judged here
    (Python reports it)."""
    tree = parsed(runnable(code)[0])
    return tree is not None and bool(tree.body) and all(_states_a_constant(stmt) for stmt in tree.body)


def _states_a_constant(stmt: ast.stmt) -> bool:
    if not isinstance(stmt, ast.Expr):
        return False
    value = stmt.value
    if isinstance(value, ast.Constant):
        return True
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "print"
        and all(isinstance(a, ast.Constant) for a in value.args)
        and all(isinstance(k.value, ast.Constant) for k in value.keywords)
    )
