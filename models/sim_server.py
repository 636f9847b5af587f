"""A simulated OpenAI-compatible server: any ChatModel (usually a seeded SimulatedModel) behind HTTP.

``mdap serve --simulated`` runs it, so any OpenAI client can be load-tested without a GPU and mdap's own HTTP
path is tested without vLLM. It speaks the part of the API mdap and most clients use:

* ``POST /v1/chat/completions``: ``messages``, ``n``, ``temperature``, ``max_tokens`` (or
  ``max_completion_tokens``; a longer answer is cut off with ``finish_reason: "length"``), ``usage``, and
  ``tools`` / ``tool_choice``: while the last message is not a tool result, each choice calls the chosen tool
  (the first one by default) with ``{"input": <last message>}`` and ``finish_reason: "tool_calls"``;
* ``GET /v1/models`` and ``GET /health``;
* faults on demand: ``fault_rate`` answers that share of requests with a 503; ``POST /sim/faults`` with a JSON
  list of ``{"status": 429, "retry_after": 0, "hang_s": 0}`` scripts the next requests exactly (``status`` 200
  with ``hang_s`` only delays); ``GET /sim/stats`` counts requests, samples and faults.

:class:`SimServer` holds the logic (testable without a socket); :func:`app` is the thin starlette layer and
:class:`RunningServer` runs it with uvicorn in a background thread (tests, benchmarks) or in the foreground
(the CLI).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mdap.errors import ConfigError
from mdap.jsontext import loads_json

from .base import ChatModel

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

__all__ = ["RunningServer", "SimFault", "SimServer", "app"]


@dataclass(frozen=True, slots=True)
class SimFault:
    """What the server does with one scripted request: answer ``status`` (after ``hang_s`` seconds).

    ``status`` 200 answers normally after the wait (a slow request); anything else answers with that HTTP
    error and, when ``retry_after`` is set, a ``Retry-After`` header.
    """

    status: int = 503
    retry_after: float | None = None
    hang_s: float = 0.0


Reply = tuple[int, dict[str, Any], dict[str, str]]
"""HTTP status, JSON body, extra headers."""


def _error(status: int, message: str, kind: str = "invalid_request_error") -> Reply:
    return status, {"error": {"message": message, "type": kind, "code": status}}, {}


def _tokens(text: str) -> int:
    return len(text) // 4 + 1


class SimServer:
    """The OpenAI-compatible behaviour of a simulated model server, without the transport.

    Args:
        model: where answers come from; its ``error_rate`` is the per-sample error rate clients see.
        name: the served model id (``/v1/models`` lists it; requests for another model get a 404).
        latency_s: seconds every completion request waits before answering (a server's generation time).
        fault_rate: share of completion requests answered with a 503 (seeded, so a run is reproducible).
        seed: seeds the fault draws.
        api_key: when set, requests must carry ``Authorization: Bearer <api_key>`` (else 401).

    Raises:
        ConfigError: a negative latency or a fault rate outside [0, 1].
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        name: str = "simulated",
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        seed: int = 0,
        api_key: str | None = None,
    ) -> None:
        if latency_s < 0 or not 0.0 <= fault_rate <= 1.0:
            raise ConfigError(f"need latency_s >= 0 and fault_rate in [0, 1], got {latency_s}, {fault_rate}")
        self.model = model
        self.name = name
        self.latency_s = latency_s
        self.fault_rate = fault_rate
        self.api_key = api_key
        self._rng = random.Random(seed)
        self.faults: deque[SimFault] = deque()
        self.stats = {"requests": 0, "samples": 0, "faults": 0}
        """Completion requests received, samples answered, faults injected."""

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header value lets a request in."""
        return self.api_key is None or header == f"Bearer {self.api_key}"

    def models(self) -> dict[str, Any]:
        """The ``/v1/models`` listing."""
        return {"object": "list", "data": [{"id": self.name, "object": "model", "owned_by": "mdap", "created": 0}]}

    def script(self, faults: Sequence[dict[str, Any]]) -> int:
        """Queue faults for the next requests (``SimFault`` fields as dicts); returns how many are queued.

        Raises:
            ConfigError: an entry that is not a SimFault.
        """
        try:
            parsed = [SimFault(**f) for f in faults]
        except TypeError as err:
            raise ConfigError(f"a fault takes status, retry_after and hang_s: {err}") from None
        for f in parsed:
            numbers = (f.hang_s, 0 if f.retry_after is None else f.retry_after)
            if (
                type(f.status) is not int
                or not 200 <= f.status <= 599
                or not all(isinstance(x, int | float) and x >= 0 for x in numbers)
            ):
                raise ConfigError(f"a fault needs status 200-599 and hang_s, retry_after >= 0, got {f}")
        self.faults.extend(parsed)
        return len(self.faults)

    def _fault(self) -> SimFault | None:
        if self.faults:
            return self.faults.popleft()
        if self.fault_rate and self._rng.random() < self.fault_rate:
            return SimFault(503)
        return None

    async def complete(self, body: Any) -> Reply:
        """Answer one ``/v1/chat/completions`` request body."""
        self.stats["requests"] += 1
        fault = self._fault()
        if fault is not None:
            if fault.hang_s:
                await asyncio.sleep(fault.hang_s)
            if fault.status != 200:
                self.stats["faults"] += 1
                status, payload, headers = _error(fault.status, f"simulated fault {fault.status}", "server_error")
                if fault.retry_after is not None:
                    headers = {"Retry-After": f"{fault.retry_after:g}"}
                return status, payload, headers
        problem = _check(body)
        if problem:
            return _error(400, problem)
        if body["model"] != self.name:
            return _error(404, f"The model `{body['model']}` does not exist.", "NotFoundError")
        n = body.get("n") or 1
        temperature = float(body.get("temperature", 1.0))
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        messages = [{"role": m.get("role", "user"), "content": m.get("content") or ""} for m in body["messages"]]
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        try:
            samples = await self.model.sample(messages, n=n, temperature=temperature, max_tokens=limit)  # type: ignore[arg-type]
        except Exception as err:  # the simulated model cannot answer this prompt (e.g. not a Hanoi state)
            return _error(400, f"the simulated model cannot answer this prompt ({type(err).__name__}: {err})")
        self.stats["samples"] += len(samples)
        tool = _chosen_tool(body) if body["messages"][-1].get("role") != "tool" else None
        choices, used = [], 0
        for i, s in enumerate(samples):
            text, finish, count = s.text, s.finish_reason, s.completion_tokens
            if limit is not None and count > limit:
                text, finish, count = text[: 4 * limit], "length", limit
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if tool is not None:
                arguments = json.dumps({"input": messages[-1]["content"]})
                call = {"id": f"call_{i}", "type": "function", "function": {"name": tool, "arguments": arguments}}
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
                finish, count = "tool_calls", _tokens(arguments)
            choices.append({"index": i, "message": message, "finish_reason": finish})
            used += count
        prompt = sum(_tokens(m["content"]) for m in messages)
        return (
            200,
            {
                "id": f"chatcmpl-{self.stats['requests']}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.name,
                "choices": choices,
                "usage": {"prompt_tokens": prompt, "completion_tokens": used, "total_tokens": prompt + used},
            },
            {},
        )


def _check(body: Any) -> str | None:
    """What is wrong with a completion request body, or None."""
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    if not isinstance(body.get("model"), str):
        return "model is required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return "messages must be a non-empty list of message objects"
    n = body.get("n", 1)
    if n is not None and (type(n) is not int or n < 1):
        return f"n must be an integer >= 1, got {n!r}"
    temperature = body.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or temperature < 0:
        return f"temperature must be a number >= 0, got {temperature!r}"
    tools = body.get("tools")
    if tools is not None and (
        not isinstance(tools, list)
        or not all(isinstance(t, dict) and isinstance(t.get("function"), dict) for t in tools)
        or not all(isinstance(t["function"].get("name"), str) for t in tools)
    ):
        return "tools must be a list of {'type': 'function', 'function': {'name': ...}} objects"
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (type(value) is not int or value < 1):
            return f"{key} must be an integer >= 1, got {value!r}"
    return None


def _chosen_tool(body: dict[str, Any]) -> str | None:
    """The function a request's ``tools``/``tool_choice`` make the model call, or None."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        return str(choice.get("function", {}).get("name"))
    return str(tools[0].get("function", {}).get("name"))


def app(server: SimServer) -> Starlette:
    """The starlette application serving ``server`` (each route hands off to it)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def denied(request: Request) -> JSONResponse | None:
        if server.authorized(request.headers.get("authorization")):
            return None
        return JSONResponse(_error(401, "invalid API key", "authentication_error")[1], 401)

    async def completions(request: Request) -> Response:
        refused = denied(request)
        if refused is not None:
            return refused
        try:
            body = loads_json(await request.body())
        except ValueError:
            body = None
        status, payload, headers = await server.complete(body)
        return JSONResponse(payload, status, headers)

    async def models(request: Request) -> Response:
        return denied(request) or JSONResponse(server.models())

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def faults(request: Request) -> Response:
        try:
            queued = server.script(loads_json(await request.body()))
        except (ValueError, TypeError, ConfigError) as err:
            return JSONResponse(_error(400, str(err))[1], 400)
        return JSONResponse({"queued": queued})

    async def stats(request: Request) -> Response:
        return JSONResponse(server.stats)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/sim/faults", faults, methods=["POST"]),
            Route("/sim/stats", stats, methods=["GET"]),
        ]
    )


class RunningServer:
    """``server`` served over HTTP by uvicorn: in a background thread (``with RunningServer(...)``) or in the
    foreground (:meth:`run`, until Ctrl-C or SIGTERM).

    Args:
        server: the simulated server.
        host: interface to listen on.
        port: port to listen on (0: a free one, see :attr:`base_url` once started).
    """

    def __init__(self, server: SimServer, *, host: str = "127.0.0.1", port: int = 0) -> None:
        try:
            import uvicorn
        except ImportError:  # pragma: no cover - a core dependency
            raise ConfigError("the simulated server needs uvicorn: pip install uvicorn starlette") from None
        self.sim = server
        config = uvicorn.Config(
            app(server), host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=1
        )
        self._uvicorn: uvicorn.Server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The API root, e.g. ``http://127.0.0.1:8000/v1`` (the bound port once started)."""
        host, port = self._uvicorn.config.host, self._uvicorn.config.port
        servers = getattr(self._uvicorn, "servers", None)  # set once it listens
        if port == 0 and servers and servers[0].sockets:
            port = self._uvicorn.config.port = servers[0].sockets[0].getsockname()[1]
        return f"http://{host}:{port}/v1"

    def run(self) -> None:
        """Serve in this thread until Ctrl-C or SIGTERM."""
        self._uvicorn.run()

    def __enter__(self) -> RunningServer:
        self._thread = threading.Thread(target=self._uvicorn.run, name="mdap-sim-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"the simulated server did not start on {self._uvicorn.config.host}:"
                                  f"{self._uvicorn.config.port} (port in use?)")  # fmt: skip
            time.sleep(0.01)
        self.base_url  # noqa: B018  # resolve port 0 to the bound port while the server listens
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
