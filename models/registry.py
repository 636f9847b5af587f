"""Turn a model spec from the command line or a config ("local", a server URL) into a ChatModel."""

from __future__ import annotations

from mdap._redact import redact
from mdap.errors import ConfigError

from .base import ChatModel

__all__ = ["TASK_SPECIFIC", "from_spec"]

TASK_SPECIFIC = "simulated"
"""The simulated backend needs a task's oracle, so the task (e.g. Hanoi) builds it, not this registry."""


def from_spec(spec: str, *, model_name: str | None = None, adapter: str | None = None) -> ChatModel:
    """Build the backend ``spec`` names.

    Args:
        spec: ``"local"`` (the embedded vLLM CPU server) or an ``http(s)://`` base URL of an OpenAI-compatible
            server.
        model_name: the served model to ask for (URL backends); None = the server's first model.
        adapter: the LoRA adapter to use by default.

    Raises:
        ConfigError: an unknown spec, or a backend whose optional dependencies are missing.
    """
    if spec == "local":
        from .local import LocalModel  # lazy: the vLLM/transformers checks run only when asked for

        return LocalModel(adapter=adapter)
    if spec.startswith(("http://", "https://")):
        from .openai_compat import OpenAICompatible

        return OpenAICompatible(spec, model_name, adapter=adapter)
    raise ConfigError(
        f"unknown model {redact(spec)!r}: use 'simulated', 'local', or the http(s):// URL of an OpenAI-compatible "
        "server"
    )
