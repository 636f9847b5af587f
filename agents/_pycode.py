"""Model-written Python as it is written: math signs (multiplication sign, division sign, minus sign, ...)
turned into Python operators.

Small models write ``17 \u00d7 23 + 144 \u00f7 12`` in code; Python refuses the whole program for one such sign.
The signs are translated outside string literals and comments only (text in quotes keeps them), by a scanner of
Python's literal syntax rather than :mod:`tokenize`, whose handling of invalid characters differs between Python
versions. Signs with no one-token translation (the square root sign) are explained when the program fails.
"""

from __future__ import annotations

import re

__all__ = ["OPERATORS", "ascii_operators", "explain_failure"]

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
