"""Plain types shared by every layer. A leaf: imports nothing of ours."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

__all__ = ["Message", "Role"]

Role = Literal["system", "user", "assistant", "tool"]


class Message(TypedDict):
    """One chat message in the OpenAI format: an assistant message that called tools natively has their
    ``tool_calls`` (``{"id", "type": "function", "function": {"name", "arguments"}}``, arguments as JSON text) and
    each result is a ``tool`` message with the ``tool_call_id`` it answers."""

    role: Role
    content: str
    tool_calls: NotRequired[list[dict[str, Any]]]
    tool_call_id: NotRequired[str]
