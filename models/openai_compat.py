"""A ChatModel for any OpenAI-compatible chat server: vLLM, llama.cpp's server, OpenAI itself.

The ``n`` samples of one vote go out as one request with the ``n`` parameter when the server honours it, else as
concurrent single requests (bounded by ``max_concurrency`` per client). Connection errors, timeouts, 429 and 5xx
are retried with exponential backoff; anything else, and a retryable error that outlasts its retries, becomes a
:class:`~mdap.errors.ModelError` naming the server, the model and what went wrong.

The wire is plain aiohttp and the standard json module: a request costs ~0.3 ms of client CPU against ~2.3 ms
through the openai package's typed client (``benchmarks/http_client_cpu.py``), which matters when a run makes
millions of requests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse, urlunparse

from mdap._redact import redact
from mdap.errors import ConfigError, ModelError
from mdap.jsontext import loads_json
from mdap.types import Message

from .base import Sample
from .pricing import Price

if TYPE_CHECKING:
    import aiohttp

__all__ = ["DEFAULT_MAX_CONCURRENCY", "OpenAICompatible"]

log = logging.getLogger("mdap.models")

_MAX_BACKOFF_S = 20.0
_WARN_EVERY_S = 60.0

DEFAULT_MAX_CONCURRENCY = 256
"""Requests one client has in flight at most by default: enough for hundreds of chains to share one client
(a MAKER step has 1-2 requests in flight), small enough not to open thousands of sockets at once."""


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


def _auth(base_url: str, api_key: str | None) -> tuple[str, str]:
    """The URL to send requests to and the ``Authorization`` header: Bearer with the API key, or Basic with the
    user and password of a URL that holds them (``http://user:pass@host/v1``; they are then taken out of it)."""
    parts = urlparse(base_url)
    if parts.username is None and parts.password is None:
        return base_url, f"Bearer {_api_key(base_url, api_key)}"
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    root = urlunparse(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return root, "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


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
        max_concurrency: requests this client has in flight at most (None: no bound). The default,
            :data:`DEFAULT_MAX_CONCURRENCY`, lets hundreds of chains share one client; when requests wait
            longer than ``warn_wait_s`` for a slot, a warning is logged (``mdap.models``, once a minute).
        use_n: ask for several samples with one request's ``n``; if the server returns fewer choices, the rest
            are drawn as concurrent single requests and ``n`` is not used again. Greedy samples (temperature 0)
            are always single requests (vLLM refuses ``n > 1`` for them).
        extra_body: extra JSON fields sent with every request (server-specific sampling options, ``tool_choice``).
        warn_wait_s: a request that waits longer than this for a concurrency slot logs a warning.
        native_tools: the server takes ``tools`` and ``tool_choice`` (vLLM: ``--enable-auto-tool-choice
            --tool-call-parser ...``); None = try on first use: a request the server refuses (HTTP 400/422) is sent
            again without them, and they are not sent again (see :mod:`mdap.models.options`).
        structured_outputs: the server takes ``response_format`` with a JSON schema; None = try on first use, as
            for ``native_tools``.
        price: the model's :class:`Price` per million tokens: each sample then carries its cost (else None,
            and reports say "no price set").

    A client serves whichever event loop calls it (a fresh HTTP connection pool per loop). The API key is sent
    only in the ``Authorization`` header and never shown: messages show the URL redacted.

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
        max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY,
        use_n: bool = True,
        extra_body: Mapping[str, Any] | None = None,
        warn_wait_s: float = 1.0,
        native_tools: bool | None = None,
        structured_outputs: bool | None = None,
        price: Price | None = None,
    ) -> None:
        if urlparse(base_url).scheme not in ("http", "https") or not urlparse(base_url).netloc:
            raise ConfigError(
                f"base_url must be an http(s):// URL such as http://127.0.0.1:8000/v1, got {redact(base_url)!r}"
            )
        if timeout <= 0 or max_retries < 0 or backoff_s < 0 or (max_concurrency is not None and max_concurrency < 1):
            raise ConfigError(
                "need timeout > 0, max_retries >= 0, backoff_s >= 0 and max_concurrency >= 1 (or None), got "
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
        self.warn_wait_s = warn_wait_s
        self.native_tools = native_tools
        """Whether the server takes ``tools``/``tool_choice``: True, False, or None (not known yet)."""
        self.structured_outputs = structured_outputs
        """Whether the server takes ``response_format``: True, False, or None (not known yet)."""
        self.price = price
        """The model's price per million tokens (None: no price set, samples cost None)."""
        self._accepted: set[str] = set()
        self._refused: set[str] = set()
        self._root, auth = _auth(self.base_url, api_key)
        self._headers = {"Authorization": auth, "Content-Type": "application/json"}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._warned_at = -_WARN_EVERY_S
        self.requests = 0
        """Requests sent (retries included)."""
        self.slot_wait_s = 0.0
        """Seconds requests spent waiting for a concurrency slot, summed."""

    def __repr__(self) -> str:
        return f"OpenAICompatible({self.shown_url!r}, model={self.model!r}, adapter={self.adapter!r})"

    def _where(self, model: str | None) -> str:
        return f"model server {self.shown_url} (model {model or self.model or '?'!r})"

    def _connect(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            import aiohttp

            self._drop_session()
            connector = aiohttp.TCPConnector(limit=self.max_concurrency or 0)
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, headers=self._headers)
            self._slots = asyncio.Semaphore(self.max_concurrency) if self.max_concurrency else None
            self._loop = loop
        return self._session

    def _drop_session(self) -> None:
        """Forget the session of a previous event loop, closing its sockets without that (maybe closed) loop."""
        old, self._session = self._session, None
        if old is None or old.closed:
            return
        connector = old.connector
        old.detach()
        if connector is not None:
            for transports in list(getattr(connector, "_conns", {}).values()):
                for proto, _ in transports:
                    transport = getattr(proto, "transport", None)
                    sock = transport.get_extra_info("socket") if transport is not None else None
                    if sock is not None:
                        # The loop that owned it may be closed: close the socket itself. asyncio hands out a
                        # TransportSocket wrapper without close(); the socket object it wraps knows it is closed,
                        # so the transport's own close later is a no-op, never a close of a reused descriptor.
                        raw = getattr(sock, "_sock", sock)
                        with contextlib.suppress(OSError):
                            raw.close()
            getattr(connector, "_conns", {}).clear()  # nothing left for the connector to warn about

    async def aclose(self) -> None:
        """Close this loop's HTTP connections (the client reconnects on next use)."""
        session, self._session, self._loop = self._session, None, None
        if session is not None:
            await session.close()

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
        data, _ = await self._call(None, "GET", "/models", None)
        try:
            return [str(m["id"]) for m in data["data"]]
        except (KeyError, TypeError) as err:
            raise ModelError(f"{self._where(None)}: GET /models answered without a model list ({err!r})") from None

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
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Mapping[str, Any] | None = None,
    ) -> list[Sample]:
        """Draw ``n`` completions of ``messages`` from ``adapter`` (default: this client's adapter, else the base).

        With ``tools`` (OpenAI function specs), a choice that calls tools has as its text the calls in the
        format mdap's workers read: ``{"tool_calls": [...]}`` (JSON), and ``finish_reason`` ``"tool_calls"``.
        ``tool_choice`` goes with them (``"required"``: the reply must call a tool). ``response_format``
        constrains the reply (structured outputs). These fields are left out when the server is known not to take
        them (``native_tools`` / ``structured_outputs`` False). The first request that carries them in a form
        (each ``tool_choice`` value is a form: a server may take ``"required"`` and refuse ``"auto"``) finds out:
        when the server refuses it (HTTP 400/422), it is sent again without them, that form is not sent again, and
        a feature not known yet is off for this client.

        Raises:
            ConfigError: n < 1 or a negative temperature.
            ModelError: the server failed, after retries where a retry can help.
        """
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {temperature}")
        adapter = adapter or self.adapter
        model = adapter or self.model or await self._resolve_model()
        body: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        sent = self._optional_fields(body, tools, tool_choice, response_format)
        if self.extra_body:
            body.update(self.extra_body)
        if sent:
            try:
                samples = await self._request(body, 1, max_tokens, model, adapter)
            except _Refused as err:
                self._refused.update(sent)
                if self.native_tools is None and any(k.startswith("tool_choice") for k in sent):
                    self.native_tools = False
                if self.structured_outputs is None and "response_format" in sent:
                    self.structured_outputs = False
                log.info("%s: the server refused %s (%s); sent without them", self.shown_url, sorted(sent), err)
                for field in ("tools", "tool_choice", "response_format"):
                    body.pop(field, None)
                samples = await self._request(body, 1, max_tokens, model, adapter)
            else:
                if any(k.startswith("tool_choice") for k in sent) and self.native_tools is None:
                    self.native_tools = True
                if "response_format" in sent and self.structured_outputs is None:
                    self.structured_outputs = True
                self._accepted.update(sent)
            if n > 1:
                samples += await self._singles(body, n - 1, max_tokens, model, adapter)
            return samples
        if n == 1 or not self.use_n or temperature == 0:  # vLLM refuses n > 1 for greedy decoding
            return await self._singles(body, n, max_tokens, model, adapter)
        samples = await self._request(body, n, max_tokens, model, adapter)
        if len(samples) < n:  # the server ignores n (llama.cpp): draw the rest one by one from now on
            self.use_n = False
            samples += await self._singles(body, n - len(samples), max_tokens, model, adapter)
        return samples[:n]

    def _optional_fields(
        self,
        body: dict[str, Any],
        tools: Sequence[Mapping[str, Any]] | None,
        tool_choice: str | Mapping[str, Any] | None,
        response_format: Mapping[str, Any] | None,
    ) -> set[str]:
        """Put the optional fields the server may take into ``body``; return the keys of those whose support is
        not certain yet (unknown, or never tried in this form): a refusal of the request turns them off."""
        unsure: set[str] = set()
        if tools and self.native_tools is not False:
            key = f"tool_choice={tool_choice if isinstance(tool_choice, str) else 'auto'}"
            if key not in self._refused:
                body["tools"] = tools
                if tool_choice is not None:
                    body["tool_choice"] = tool_choice
                if key not in self._accepted:
                    unsure.add(key)
        structured = self.structured_outputs is not False and "response_format" not in self._refused
        if response_format is not None and structured:
            body["response_format"] = response_format
            if "response_format" not in self._accepted:
                unsure.add("response_format")
        return unsure

    async def _singles(
        self, body: dict[str, Any], n: int, max_tokens: int | None, model: str, adapter: str | None
    ) -> list[Sample]:
        if n == 1:
            return await self._request(body, 1, max_tokens, model, adapter)
        parts = await asyncio.gather(*(self._request(body, 1, max_tokens, model, adapter) for _ in range(n)))
        return [s for part in parts for s in part[:1]]

    async def _request(
        self, body: dict[str, Any], n: int, max_tokens: int | None, model: str, adapter: str | None
    ) -> list[Sample]:
        if n > 1:
            body = {**body, "n": n}
        data, latency = await self._call(model, "POST", "/chat/completions", json.dumps(body).encode())
        try:
            samples = _samples(data, latency, body["temperature"], max_tokens, adapter)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ModelError(
                f"{self._where(model)}: the answer is not a chat completion ({type(err).__name__}: {err}); "
                "check that the URL points at an OpenAI-compatible API root (…/v1)"
            ) from None
        return self.price.charge(samples) if self.price is not None else samples

    async def _slot(self, slots: asyncio.Semaphore) -> None:
        """Take a concurrency slot; a long wait is logged (once a minute), never silent."""
        if not slots.locked():
            await slots.acquire()
            return
        t0 = time.perf_counter()
        await slots.acquire()
        waited = time.perf_counter() - t0
        self.slot_wait_s += waited
        if waited > self.warn_wait_s and t0 - self._warned_at > _WARN_EVERY_S:
            self._warned_at = t0
            log.warning(
                "%s: a request waited %.1f s for one of the client's max_concurrency=%d slots; raise "
                "max_concurrency (OpenAICompatible(max_concurrency=...)) if the server can take more",
                self.shown_url, waited, self.max_concurrency,
            )  # fmt: skip

    async def _call(self, model: str | None, method: str, path: str, data: bytes | None) -> tuple[Any, float]:
        """Send one request, retrying connection errors, timeouts, 429 and 5xx; return (JSON body, latency).

        Raises:
            ModelError: any other status, or a retryable failure that outlasts its retries.
        """
        import aiohttp

        session = self._connect()
        slots = self._slots
        url = self._root + path
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            self.requests += 1
            if slots is not None:
                await self._slot(slots)
            try:
                t0 = time.perf_counter()
                async with session.request(method, url, data=data) as response:
                    raw = await response.read()
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
                latency = time.perf_counter() - t0
            except TimeoutError:
                problem = f"no answer within the {self.timeout:g} s timeout"
                hint = "raise timeout=, or check whether the server is overloaded or hung"
                retry_after = None
            except aiohttp.ClientError as err:
                problem = f"connection failed ({type(err).__name__}: {err})"
                hint = "check that the server is running and reachable at this URL"
                retry_after = None
            else:
                if status == 200:
                    try:
                        return loads_json(raw), latency
                    except ValueError:
                        raise ModelError(
                            f"{self._where(model)}: {method} {path} answered with something that is not JSON "
                            f"({raw[:80]!r}); check that the URL points at an OpenAI-compatible API root (…/v1)"
                        ) from None
                problem = f"HTTP {status}: {_error_text(raw)}"
                if status != 429 and status < 500:
                    hint = _status_hint(status, self.shown_url)
                    refused = _Refused if status in (400, 422) else ModelError
                    raise refused(redact(f"{self._where(model)}: {problem}; {hint}"))
                hint = "the server is rate limiting" if status == 429 else "the server failed; check its log"
            finally:
                if slots is not None:
                    slots.release()
            if attempt + 1 < attempts:
                await asyncio.sleep(self._delay(attempt, retry_after))
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


class _Refused(ModelError):
    """The server refused the request as malformed (HTTP 400/422): fields it does not take, among others."""


def _samples(
    data: dict[str, Any], latency: float, temperature: float, max_tokens: int | None, adapter: str | None
) -> list[Sample]:
    """The Samples of a chat completion body (choices in index order, usage shared out per choice)."""
    choices = data["choices"]
    if len(choices) > 1:
        choices = sorted(choices, key=lambda c: c.get("index", 0))
    texts = []
    for c in choices:
        message = c["message"]
        calls = message.get("tool_calls")
        texts.append(json.dumps({"tool_calls": calls}) if calls else message.get("content") or "")
    finishes = [c.get("finish_reason") or "stop" for c in choices]
    usage = data.get("usage")
    if usage:
        capped = [max_tokens if f == "length" else None for f in finishes]
        tokens = _split_tokens(int(usage.get("completion_tokens") or 0), texts, capped)
        prompt = int(usage.get("prompt_tokens") or 0)
    else:  # the server reports no usage: a rough estimate keeps the too-long red flag meaningful
        tokens = [len(t) // 4 + 1 for t in texts]
        prompt = 0
    return [
        Sample(text, count, prompt, finish, latency, adapter, temperature)
        for text, count, finish in zip(texts, tokens, finishes, strict=True)
    ]


def _error_text(raw: bytes) -> str:
    """The message of an error response body (OpenAI's ``{"error": {"message": ...}}``, or the text itself)."""
    try:
        body = loads_json(raw)
    except ValueError:
        return raw[:200].decode(errors="replace").strip() or "(empty body)"
    if isinstance(body, dict):
        inner = body.get("error", body)
        text = inner.get("message") or inner.get("detail") if isinstance(inner, dict) else inner
        if text:
            return str(text)
    return str(body)[:200]


def _status_hint(status: int, base_url: str) -> str:
    if status in (401, 403):
        return "check the API key (api_key=, or OPENAI_API_KEY for api.openai.com)"
    if status == 404:
        return f"check the model or adapter name: GET {base_url}/models lists what the server serves"
    return "check the request settings (model, max_tokens, temperature, n)"
