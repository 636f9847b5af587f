"""A ChatModel for any OpenAI-compatible chat server: vLLM, llama.cpp's server, OpenAI itself.

The ``n`` samples of one vote go out as one request with the ``n`` parameter when the server honours it, else as
concurrent single requests (bounded by ``max_concurrency`` per client). Connection errors, timeouts, 429 and 5xx
are retried with exponential backoff; anything else, and a retryable error that outlasts its retries, becomes a
:class:`~mdap.errors.ModelError` naming the server, the model and what went wrong.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from mdap._redact import redact
from mdap.errors import ConfigError, ModelError
from mdap.types import Message

from .base import Sample

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion

__all__ = ["OpenAICompatible"]

T = TypeVar("T")

_MAX_BACKOFF_S = 20.0


def _api_key(base_url: str, api_key: str | None) -> str:
    """The key to send: the one given, else OPENAI_API_KEY for OpenAI's own hosts only, else a placeholder.

    A user's OpenAI key is never sent to a third-party or local server by accident.
    """
    if api_key:
        return api_key
    host = urlparse(base_url).hostname or ""
    if host == "openai.com" or host.endswith(".openai.com"):
        return os.environ.get("OPENAI_API_KEY", "EMPTY")
    return "EMPTY"


def _split_tokens(total: int, texts: Sequence[str], capped: Sequence[int | None]) -> list[int]:
    """Share a batched request's completion tokens among its choices.

    Servers report usage per request, not per choice. A choice cut off at ``max_tokens`` (``capped[i]`` set) used
    exactly that many; the rest is shared in proportion to text length. The shares add up to ``total``.
    """
    if len(texts) == 1:
        return [total]
    shares = [c or 0 for c in capped]
    free = [i for i, c in enumerate(capped) if c is None]
    left = total - sum(shares)
    if left < 0 or not free:  # the server counted differently: fall back to shares of everything
        shares, free, left = [0] * len(texts), list(range(len(texts))), total
    weights = {i: len(texts[i]) + 1 for i in free}
    whole = sum(weights.values())
    for i in free:
        shares[i] = left * weights[i] // whole
    for i in sorted(free, key=lambda i: -weights[i])[: left - sum(shares[i] for i in free)]:
        shares[i] += 1
    return shares


class OpenAICompatible:
    """Samples from a model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Args:
        base_url: the server's API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model to ask for; None = the first model the server lists (vLLM lists its base first).
        api_key: the bearer token; None = ``OPENAI_API_KEY`` for api.openai.com, a placeholder for other servers.
        adapter: the LoRA adapter (served model name) used when :meth:`sample` is given none.
        timeout: seconds one request may take before it counts as failed (and is retried).
        max_retries: retries of a request after a connection error, timeout, 429 or 5xx.
        backoff_s: the first retry's delay; each further retry doubles it (with jitter, capped at 20 s).
        max_concurrency: requests this client has in flight at most.
        use_n: ask for several samples with one request's ``n``; if the server returns fewer choices, the rest
            are drawn as concurrent single requests and ``n`` is not used again. Greedy samples (temperature 0)
            are always single requests (vLLM refuses ``n > 1`` for them).
        extra_body: extra JSON fields sent with every request (server-specific sampling options).

    The ``openai`` package is imported on first use. A client serves whichever event loop calls it (a fresh
    HTTP connection pool per loop).

    Raises:
        ConfigError: an empty or non-http(s) base_url, or a bad timeout/retry/concurrency setting.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        *,
        adapter: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_concurrency: int = 8,
        use_n: bool = True,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if urlparse(base_url).scheme not in ("http", "https") or not urlparse(base_url).netloc:
            raise ConfigError(
                f"base_url must be an http(s):// URL such as http://127.0.0.1:8000/v1, got {redact(base_url)!r}"
            )
        if timeout <= 0 or max_retries < 0 or backoff_s < 0 or max_concurrency < 1:
            raise ConfigError(
                "need timeout > 0, max_retries >= 0, backoff_s >= 0 and max_concurrency >= 1, got "
                f"timeout={timeout}, max_retries={max_retries}, backoff_s={backoff_s}, "
                f"max_concurrency={max_concurrency}"
            )
        self.base_url = base_url.rstrip("/")
        self.shown_url = redact(self.base_url)
        """``base_url`` as messages show it: without credentials (userinfo, key= parameters)."""
        self.model = model
        self.adapter = adapter
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_concurrency = max_concurrency
        self.use_n = use_n
        self.extra_body = dict(extra_body or {})
        self._api_key = _api_key(base_url, api_key)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: AsyncOpenAI | None = None
        self._slots: asyncio.Semaphore | None = None
        self.requests = 0
        """Requests sent (retries included)."""

    def __repr__(self) -> str:
        return f"OpenAICompatible({self.shown_url!r}, model={self.model!r}, adapter={self.adapter!r})"

    def _where(self, model: str | None) -> str:
        return f"model server {self.shown_url} (model {model or self.model or '?'!r})"

    def _connect(self) -> tuple[AsyncOpenAI, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._slots is None or self._loop is not loop:
            try:
                from openai import AsyncOpenAI
            except ImportError:  # pragma: no cover - openai is a core dependency
                raise ConfigError("the openai package is missing: pip install openai") from None
            self._client = AsyncOpenAI(
                base_url=self.base_url, api_key=self._api_key, timeout=self.timeout, max_retries=0
            )
            self._slots = asyncio.Semaphore(self.max_concurrency)
            self._loop = loop
        return self._client, self._slots

    async def aclose(self) -> None:
        """Close this loop's HTTP connections (the client reconnects on next use)."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> OpenAICompatible:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def models(self) -> list[str]:
        """The ids of the models the server serves (base models and adapters).

        Raises:
            ModelError: the server cannot be reached or answers with an error.
        """
        client, _ = self._connect()

        async def listing() -> list[str]:
            page = await client.models.list()
            return [m.id for m in page.data]

        return await self._call(None, listing)

    async def _resolve_model(self) -> str:
        if self.model is None:
            served = await self.models()
            if not served:
                raise ModelError(f"{self._where(None)}: the server lists no models; pass model= explicitly")
            self.model = served[0]
        return self.model

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
    ) -> list[Sample]:
        """Draw ``n`` completions of ``messages`` from ``adapter`` (default: this client's adapter, else the base).

        Raises:
            ConfigError: n < 1 or a negative temperature.
            ModelError: the server failed, after retries where a retry can help.
        """
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {temperature}")
        adapter = adapter or self.adapter
        model = adapter or await self._resolve_model()
        if n == 1 or not self.use_n or temperature == 0:  # vLLM refuses n > 1 for greedy decoding
            return await self._singles(messages, n, temperature, max_tokens, model, adapter)
        samples = await self._request(messages, n, temperature, max_tokens, model, adapter)
        if len(samples) < n:  # the server ignores n (llama.cpp): draw the rest one by one from now on
            self.use_n = False
            samples += await self._singles(messages, n - len(samples), temperature, max_tokens, model, adapter)
        return samples[:n]

    async def _singles(
        self,
        messages: Sequence[Message],
        n: int,
        temperature: float,
        max_tokens: int | None,
        model: str,
        adapter: str | None,
    ) -> list[Sample]:
        if n == 1:
            return await self._request(messages, 1, temperature, max_tokens, model, adapter)
        parts = await asyncio.gather(
            *(self._request(messages, 1, temperature, max_tokens, model, adapter) for _ in range(n))
        )
        return [s for part in parts for s in part[:1]]

    async def _request(
        self,
        messages: Sequence[Message],
        n: int,
        temperature: float,
        max_tokens: int | None,
        model: str,
        adapter: str | None,
    ) -> list[Sample]:
        client, slots = self._connect()
        body: dict[str, Any] = {"model": model, "messages": list(messages), "temperature": temperature}
        if n > 1:
            body["n"] = n
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if self.extra_body:
            body["extra_body"] = self.extra_body

        async def create() -> tuple[ChatCompletion, float]:
            async with slots:
                t0 = time.perf_counter()
                response = await client.chat.completions.create(**body)
                return response, time.perf_counter() - t0

        response, latency = await self._call(model, create)
        return self._samples(response, latency, temperature, max_tokens, adapter)

    @staticmethod
    def _samples(
        response: ChatCompletion, latency: float, temperature: float, max_tokens: int | None, adapter: str | None
    ) -> list[Sample]:
        choices = sorted(response.choices, key=lambda c: c.index)
        texts = [c.message.content or "" for c in choices]
        usage = response.usage
        if usage is not None:
            capped = [max_tokens if c.finish_reason == "length" else None for c in choices]
            tokens = _split_tokens(usage.completion_tokens, texts, capped)
            prompt = usage.prompt_tokens
        else:  # the server reports no usage: a rough estimate keeps the too-long red flag meaningful
            tokens = [len(t) // 4 + 1 for t in texts]
            prompt = 0
        return [
            Sample(text, count, prompt, c.finish_reason or "stop", latency, adapter, temperature)
            for c, text, count in zip(choices, texts, tokens, strict=True)
        ]

    async def _call(self, model: str | None, make: Callable[[], Awaitable[T]]) -> T:
        """Await ``make()``, retrying connection errors, timeouts, 429 and 5xx; map failures to ModelError."""
        import openai

        attempts = self.max_retries + 1
        for attempt in range(attempts):
            self.requests += 1
            try:
                return await make()
            except openai.APITimeoutError:
                problem = f"no answer within the {self.timeout:g} s timeout"
                hint = "raise timeout=, or check whether the server is overloaded or hung"
                delay = self._delay(attempt, None)
            except openai.APIConnectionError as err:
                cause = err.__cause__ or err
                problem = f"connection failed ({type(cause).__name__}: {cause})"
                hint = "check that the server is running and reachable at this URL"
                delay = self._delay(attempt, None)
            except openai.APIStatusError as err:
                status = err.status_code
                problem = f"HTTP {status}: {_message(err)}"
                if status != 429 and status < 500:
                    hint = _status_hint(status, self.shown_url)
                    raise ModelError(redact(f"{self._where(model)}: {problem}; {hint}")) from err
                hint = "the server is rate limiting" if status == 429 else "the server failed; check its log"
                delay = self._delay(attempt, err.response.headers.get("retry-after"))
            if attempt + 1 < attempts:
                await asyncio.sleep(delay)
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        raise ModelError(redact(f"{self._where(model)}: {problem} after {tries}; {hint}"))

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), _MAX_BACKOFF_S)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        base = min(self.backoff_s * 2.0**attempt, _MAX_BACKOFF_S)
        return base * (0.5 + random.random() / 2)


def _message(err: Any) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        text = inner.get("message") if isinstance(inner, dict) else inner
        if text:
            return str(text)
    return str(getattr(err, "message", err))


def _status_hint(status: int, base_url: str) -> str:
    if status in (401, 403):
        return "check the API key (api_key=, or OPENAI_API_KEY for api.openai.com)"
    if status == 404:
        return f"check the model or adapter name: GET {base_url}/models lists what the server serves"
    return "check the request settings (model, max_tokens, temperature, n)"
