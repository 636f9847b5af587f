"""Optional request fields beside the ChatModel protocol's: native tool calls and structured outputs.

A backend that takes them says so with two attributes, each True (it does), False (it does not: callers keep to
the text protocol) or None (not known yet: tried on first use and remembered):

- ``native_tools``: ``sample(..., tools=[...], tool_choice="auto" | "required")``; a choice that calls tools
  comes back as the text ``{"tool_calls": [...]}``, which the worker's text protocol reads as well.
- ``structured_outputs``: ``sample(..., response_format={"type": "json_schema", ...})`` constrains the reply to
  a JSON schema (:func:`json_schema_format`).

:func:`supports` reads the attributes (through wrappers that forward them); :func:`with_options` wraps a model so
that every request carries given fields, for code that knows only the protocol's arguments (voters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from mdap.types import Message

from .base import ChatModel, Sample

__all__ = ["Feature", "WithOptions", "json_schema_format", "supports", "with_options"]

Feature = Literal["native_tools", "structured_outputs"]


def supports(model: object, feature: Feature) -> bool:
    """Whether requests to ``model`` may carry the fields of ``feature``: it takes them, or it is not known yet
    (the backend then tries them on first use, and drops them from then on if the server refuses them)."""
    return getattr(model, feature, False) is not False


def json_schema_format(name: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The ``response_format`` that constrains a reply to ``schema`` (strict).

    Keep schemas to what every backend takes: no ``pattern`` (it crashes vLLM 0.32's xgrammar backend with an
    HTTP 500). String and ``anyOf`` schemas need the server to forbid free whitespace (``mdap serve`` sets
    ``disable_any_whitespace``), or a small model may fill the reply with blanks.
    """
    return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema), "strict": True}}


class WithOptions:
    """A ChatModel whose every request carries ``options`` (fields that are None are not sent).

    Args:
        model: the model to ask.
        options: keyword arguments added to each ``sample`` call (``tools``, ``tool_choice``, ``response_format``).
    """

    __slots__ = ("model", "options")

    def __init__(self, model: ChatModel, options: Mapping[str, Any]) -> None:
        self.model = model
        self.options = {k: v for k, v in options.items() if v is not None}

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
    ) -> list[Sample]:
        """Sample from the wrapped model with the options added."""
        return await self.model.sample(
            messages, n=n, temperature=temperature, max_tokens=max_tokens, adapter=adapter, **self.options
        )


def with_options(model: ChatModel, **options: Any) -> ChatModel:
    """``model`` with ``options`` on every request (:class:`WithOptions`), or ``model`` itself when all are None."""
    if all(v is None for v in options.values()):
        return model
    return WithOptions(model, options)
