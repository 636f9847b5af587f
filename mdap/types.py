"""Plain types shared by every layer. A leaf: imports nothing of ours."""

from __future__ import annotations

from typing import Literal, TypedDict

__all__ = ["Message", "Role"]

Role = Literal["system", "user", "assistant", "tool"]


class Message(TypedDict):
    """One chat message in the OpenAI format."""

    role: Role
    content: str
