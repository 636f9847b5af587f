"""One way from a model spec ("simulated", "local", "local:PATH", a URL) to a ready ChatModel: :func:`open_model`.

Every CLI command and eval opens its model here, so a server it starts or an HTTP session it opens is closed
when the ``async with`` ends::

    async with open_model("http://127.0.0.1:8000/v1", model_name="m") as model:
        samples = await model.sample([{"role": "user", "content": "hi"}])
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from mdap._redact import redact
from mdap.errors import ConfigError

from .base import ChatModel
from .pricing import Price

__all__ = ["SIMULATED", "open_model"]

SIMULATED = "simulated"
"""The spec of the simulated backend. It needs a task's oracle, so the task (e.g. Hanoi) builds it and hands
:func:`open_model` a ``simulated`` factory."""


@asynccontextmanager
async def open_model(
    spec: str | ChatModel,
    *,
    model_name: str | None = None,
    adapter: str | None = None,
    simulated: Callable[[], ChatModel] | None = None,
    price: Price | None = None,
) -> AsyncIterator[ChatModel]:
    """Build the model ``spec`` names, start it, yield it ready, and close it (servers, sessions) on exit.

    Args:
        spec: ``"simulated"`` (built by ``simulated``), ``"local"`` (the embedded vLLM CPU server; with an
            ``adapter``, the adapter of that name in the adapter store is served, unless ``$MDAP_LOCAL_URL``
            names a shared server), ``"local:PATH"`` (your own GGUF file or model folder on the local vLLM server,
            see :class:`~mdap.models.LocalModel`), an ``http(s)://`` base URL of an OpenAI-compatible server, or a
            built model (started and closed here if it is an async context manager).
        model_name: the served model to ask for (URL backends); None = the server's first model.
        adapter: the LoRA adapter to sample from by default.
        simulated: builds the task's simulated model when ``spec`` is ``"simulated"``.
        price: the model's price per million tokens (local and URL backends): samples then carry their cost.

    Raises:
        ConfigError: an unknown spec, ``"simulated"`` where no task supplies one, a ``local:PATH`` that is not a
            model vLLM serves, a price for a model given built, or a backend whose optional dependencies are
            missing.
        ModelError: the backend did not start.
    """
    if isinstance(spec, str):
        model = _build(spec, model_name=model_name, adapter=adapter, simulated=simulated, price=price)
    elif price is not None:
        raise ConfigError("a price is given with a built model: give it to the model itself (price=Price(...))")
    else:
        model = spec
    if isinstance(model, AbstractAsyncContextManager):  # structural: has __aenter__ and __aexit__
        async with model as started:
            yield started
    else:
        yield model


def _build(
    spec: str,
    *,
    model_name: str | None,
    adapter: str | None,
    simulated: Callable[[], ChatModel] | None,
    price: Price | None,
) -> ChatModel:
    if spec == SIMULATED:
        if simulated is None:
            raise ConfigError("the simulated model needs a task's oracle, and this command has none: give --model")
        return simulated()
    if spec == "local":
        from .local import LOCAL_URL_ENV, LocalModel  # lazy: the vLLM/transformers checks run only when asked for

        if adapter is None or os.environ.get(LOCAL_URL_ENV):
            return LocalModel(adapter=adapter, price=price)
        from .adapter_store import resolve_adapter

        served = resolve_adapter(adapter)  # a trained adapter, served by name from the store
        return LocalModel(adapter=adapter, adapters=[served], max_lora_rank=max(16, served.rank or 16), price=price)
    if spec.startswith("local:"):
        from .local import LocalModel

        if not spec[len("local:") :]:
            raise ConfigError("'local:' names no model: give local:PATH, a GGUF file or a Hugging Face model folder")
        return LocalModel(path=spec[len("local:") :], adapter=adapter, price=price)
    if spec.startswith(("http://", "https://")):
        from .openai_compat import OpenAICompatible

        return OpenAICompatible(spec, model_name, adapter=adapter, price=price)
    raise ConfigError(
        f"unknown model {redact(spec)!r}: use 'simulated', 'local', 'local:PATH' (a GGUF file or model folder), "
        "or the http(s):// URL of an OpenAI-compatible server"
    )
