"""A scripted OpenAI-compatible HTTP server on loopback, for client tests that need exact failures.

Each request to ``/v1/chat/completions`` takes the next action from the script: a JSON answer with a status, a
hang, or a dropped connection. When the script is used up it answers with ``n`` well-formed choices.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def completion(
    texts: list[str], completion_tokens: int | None = None, finish: str | list[str] = "stop"
) -> dict[str, Any]:
    """A chat completion body with one choice per text (``finish``: one reason for all, or one per choice)."""
    finishes = finish if isinstance(finish, list) else [finish] * len(texts)
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "stub",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": f}
            for i, (t, f) in enumerate(zip(texts, finishes, strict=True))
        ],
        "usage": {
            "prompt_tokens": 7,
            "completion_tokens": completion_tokens if completion_tokens is not None else 3 * len(texts),
            "total_tokens": 7 + (completion_tokens or 3 * len(texts)),
        },
    }


@dataclass
class Action:
    """What the server does with one request."""

    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0
    drop: bool = False


class StubServer:
    """The server; ``requests`` records every JSON body received."""

    def __init__(self, script: list[Action] | None = None, *, honour_n: bool = True) -> None:
        self.script = list(script or [])
        self.honour_n = honour_n
        self.requests: list[dict[str, Any]] = []
        self.released = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "base-model", "object": "model"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                stub.requests.append(request)
                action = stub.script.pop(0) if stub.script else Action()
                if action.hang_s:
                    stub.released.wait(action.hang_s)
                if action.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                n = int(request.get("n", 1)) if stub.honour_n else 1
                body = action.body or completion([f"answer {i}" for i in range(n)])
                self._send(action.status, body, action.headers)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()
