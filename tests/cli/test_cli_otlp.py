"""--otlp URL: the run commands export their spans over OTLP/HTTP; a bad URL or a missing extra is a clean error."""

from __future__ import annotations

import http.server
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from mdap.cli import main

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")


class _Collector(http.server.BaseHTTPRequestHandler):
    posts: ClassVar[list[tuple[str, str, int]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.posts.append((self.path, self.headers.get("Content-Type") or "", len(body)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass  # quiet: the test reads the recorded posts


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, int]]]]:
    """A tiny OTLP/HTTP collector on 127.0.0.1: it records each POST's path, content type and size."""
    posts: list[tuple[str, str, int]] = []
    handler = type("Collector", (_Collector,), {"posts": posts})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", posts
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_run_exports_its_spans_to_the_collector(tmp_path: Path, collector: tuple[str, list]) -> None:
    url, posts = collector
    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps({"roles": [{"name": "writer", "description": "writes"}]}))
    argv = ["run", "say hi", "--roles", str(roles), "--model", "simulated", "--no-checkpoint", "--no-progress"]
    assert main([*argv, "--otlp", url]) == 0
    assert posts and all(path == "/v1/traces" for path, _, _ in posts)
    assert posts[0][1] == "application/x-protobuf" and sum(size for _, _, size in posts) > 0


def test_hanoi_exports_its_spans_to_the_collector(tmp_path: Path, collector: tuple[str, list]) -> None:
    url, posts = collector
    argv = ["hanoi", "--disks", "3", "--k", "1", "--run-dir", str(tmp_path / "run"), "--no-progress"]
    assert main([*argv, "--otlp", url + "/v1/traces"]) == 0
    assert [path for path, _, _ in posts][:1] == ["/v1/traces"]


@pytest.mark.parametrize("bad", ["ftp://127.0.0.1:4318", "127.0.0.1:4318", "http://", "http://host:99999"])
def test_a_bad_otlp_url_is_refused_before_the_run(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["hanoi", "--disks", "2", "--otlp", bad])
    assert exit_.value.code == 2
    assert "--otlp" in capsys.readouterr().err


def test_otlp_without_opentelemetry_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from mdap.agents.telemetry import otlp_provider
    from mdap.errors import ConfigError

    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError, match=r"pip install 'mdap\[otel\]'"):
        otlp_provider("http://127.0.0.1:4318")


def test_bench_gaia_exports_its_spans_to_the_collector(tmp_path: Path, collector: tuple[str, list]) -> None:
    url, posts = collector
    argv = ["bench", "gaia", "--data", "mini", "--limit", "1", "--out", str(tmp_path / "out"), "--no-progress"]
    assert main([*argv, "--sandbox", "none", "--otlp", url]) == 0
    assert posts and {path for path, _, _ in posts} == {"/v1/traces"}
