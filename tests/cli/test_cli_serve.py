"""``mdap serve``: bad input is refused before anything starts; a served server runs until SIGTERM, then stops with
every process it started. A stand-in executable plays vLLM here (the real server is tested in tests/models)."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

import mdap.models
from mdap.cli import main

_FAKE = f"""#!{sys.executable}
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
print("fake vllm", " ".join(sys.argv[1:]), flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), H).serve_forever()
"""


@pytest.fixture
def base(tmp_path: Path) -> Path:
    folder = tmp_path / "base-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def test_an_adapter_without_a_path_is_a_usage_error(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--base", str(base), "--adapter", "nopath"])
    assert exit_.value.code == 2
    assert "--adapter takes NAME=PATH" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--adapter", "a=/does/not/exist"], "adapter folder /does/not/exist does not exist"),
        (["--adapter", "a=/x", "--adapter", "a=/y"], "--adapter names must be unique"),
    ],
)
def test_bad_adapters_are_refused_before_starting(
    base: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--base", str(base), *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("name", ["hermes --x", "", "Hermes", "a" * 65])
def test_a_bad_tool_parser_name_is_a_usage_error(base: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--base", str(base), "--tool-parser", name])
    assert exit_.value.code == 2
    assert "is no tool parser name" in capsys.readouterr().err


def test_a_missing_base_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--base", str(tmp_path / "missing")]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_serve_runs_until_sigterm_and_leaves_nothing_running(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "fake-python"
    fake.write_text(_FAKE)
    fake.chmod(0o755)
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "r": 8}))
    monkeypatch.setattr(mdap.models, "VLLMServer", functools.partial(mdap.models.VLLMServer, python=str(fake)))
    log = tmp_path / "server.log"
    before = signal.getsignal(signal.SIGTERM)

    def stop_when_served() -> None:
        deadline = time.monotonic() + 30
        while "fake vllm" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_served, daemon=True).start()
    argv = ["serve", "--base", str(base), "--adapter", f"planner={lora}", "--log", str(log), "--tool-parser", "hermes"]
    code = main([*argv, "--", "--x", "1"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "--enable-auto-tool-choice --tool-call-parser hermes" in log.read_text()
    assert "mdap: native tool calls (hermes)" in out.out
    assert "mdap: serving " in out.out and ", planner at http://127.0.0.1:" in out.out
    assert "--lora-modules planner=" in log.read_text() and "--x 1" in log.read_text()
    assert signal.getsignal(signal.SIGTERM) is before
    port = int(out.out.split("http://127.0.0.1:")[1].split("/")[0])
    assert not any(c.laddr and c.laddr.port == port for c in psutil.net_connections("tcp") if c.status == "LISTEN")
