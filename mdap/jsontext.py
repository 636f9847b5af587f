"""JSON from outside - a model's reply, a server's body, a user's file - where too-deep nesting is a parse error.

``json.loads`` raises :class:`RecursionError`, not a ``ValueError``, on nesting deeper than the interpreter's
recursion limit (a reply of 100,000 ``[`` does it), and that escapes every ``except ValueError`` around a parse:
a planner's reply became a traceback out of ``pipeline.run()`` instead of a :class:`~mdap.errors.PlanError`.
These functions raise :class:`json.JSONDecodeError` (a ``ValueError``) instead, so each parser's own handling
turns it into its own error (a PlanError, a red flag, a ConfigError).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["TOO_DEEP", "loads_json", "raw_decode_json"]

TOO_DEEP = "nested too deeply"
"""The message of the JSONDecodeError for too-deep nesting."""


def _text(doc: str | bytes | bytearray) -> str:
    return doc if isinstance(doc, str) else bytes(doc[:200]).decode("utf-8", "replace")


def loads_json(doc: str | bytes | bytearray) -> Any:
    """``json.loads(doc)``; nesting too deep to parse is a :class:`json.JSONDecodeError`, like any bad JSON."""
    try:
        return json.loads(doc)
    except RecursionError:
        raise json.JSONDecodeError(TOO_DEEP, _text(doc), 0) from None


def raw_decode_json(decoder: json.JSONDecoder, text: str, start: int = 0) -> tuple[Any, int]:
    """``decoder.raw_decode(text, start)``; nesting too deep is a :class:`json.JSONDecodeError`."""
    try:
        return decoder.raw_decode(text, start)
    except RecursionError:
        raise json.JSONDecodeError(TOO_DEEP, text, start) from None
