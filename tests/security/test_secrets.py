"""Credentials never reach an error, a log line, a report, a trace or a run file: mdap._redact, used everywhere."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from mdap._redact import MASK, is_secret_name, redact, redact_data, redacting_logs
from mdap.agents.events import Event, JsonlTrace
from mdap.errors import ConfigError, ModelError
from mdap.models import OpenAICompatible, open_model
from mdap.pool._redis import check_url
from mdap.report import RunReport

MDAP = [sys.executable, "-m", "mdap.cli"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://user:KEY@host/v1", "http://***@host/v1"),
        ("http://TOKEN@host:8000/v1", "http://***@host:8000/v1"),
        ("model server http://u:p@ss@127.0.0.1:9/v1 failed", "model server http://***@127.0.0.1:9/v1 failed"),
        ("redis://:KEY@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("redis://h:6379/0?password=KEY&db=1", "redis://h:6379/0?password=***&db=1"),
        ("https://api.example.com/v1?api_key=KEY", "https://api.example.com/v1?api_key=***"),
        (
            "?token=KEY&access_token=KEY&key=KEY&secret=KEY&client_secret=KEY&x=1",
            "?token=***&access_token=***&key=***&secret=***&client_secret=***&x=1",
        ),
        ("OPENAI_API_KEY=KEY", "OPENAI_API_KEY=***"),
        ("Authorization: Bearer KEY123", "Authorization: Bearer ***"),
        ("{'Authorization': 'Basic KEY123=='}", "{'Authorization': '***'}"),
        ("sent Bearer KEY123 to the server", "sent Bearer *** to the server"),
        ("X-API-Key: KEY", "X-API-Key: ***"),
        ('{"api_key": "KEY", "max_tokens": 5}', '{"api_key": "***", "max_tokens": 5}'),
        ("args: {'api_key': ['KEY'], 'port': 8000}", "args: {'api_key': ['***'], 'port': 8000}"),
        ("Namespace(api_key='KEY', port=8000)", "Namespace(api_key='***', port=8000)"),
        ("vllm serve m --api-key KEY --port 1", "vllm serve m --api-key *** --port 1"),
        ("--api-key=KEY", "--api-key=***"),
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz1234", "key sk-***"),
    ],
)
def test_redact_hides_every_kind_of_credential(text: str, shown: str) -> None:
    assert redact(text) == shown
    assert redact(shown) == shown, "idempotent"


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:8000/v1",
        "redis://h:6379/0?db=1",
        "sort_key=3 step_key=4 max_tokens=100 keyboard=2",
        "--max-tokens 100 --token-budget 5",
        "mail me at user@example.com",
        '{"kind": "subtask_finished", "answer": "42", "samples": 3}',
        "",
    ],
)
def test_redact_leaves_text_without_credentials_alone(text: str) -> None:
    assert redact(text) == text


def test_secret_names_and_redact_data() -> None:
    assert all(map(is_secret_name, ["api_key", "password", "OPENAI_API_KEY", "access_token", "Authorization", "key"]))
    assert not any(map(is_secret_name, ["max_tokens", "sort_key", "model", "keyboard", "tokens"]))
    data = {
        "model": "http://u:KEY@h/v1",
        "api_key": "KEY",
        "n": 3,
        "errors": ["token=KEY", ("password=KEY",)],
        "nested": {"Authorization": "Bearer KEY"},
        "key": "",
    }
    assert redact_data(data) == {
        "model": "http://***@h/v1",
        "api_key": MASK,
        "n": 3,
        "errors": ["token=***", ("password=***",)],
        "nested": {"Authorization": MASK},
        "key": "",
    }


def test_redacting_logs_redacts_messages_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("mdap.test_secrets")
    with redacting_logs(), caplog.at_level(logging.INFO, logger="mdap.test_secrets"):
        log.info("serving on %s", "redis://:KEY@h:6379")
        try:
            raise ValueError("http://u:KEY@h/v1 refused")
        except ValueError:
            log.exception("failed with api_key=%s", "KEY")
    after = logging.getLogRecordFactory()
    text = caplog.text
    assert "KEY" not in text
    assert "redis://***@h:6379" in text and "http://***@h/v1 refused" in text and "api_key=***" in text
    log.warning("outside: token=%s", "KEY2")
    assert "token=KEY2" in caplog.text, "the record factory is put back on exit"
    assert after is logging.getLogRecordFactory()


async def test_model_errors_never_show_the_key_of_the_url() -> None:
    model = OpenAICompatible("http://user:KEY@127.0.0.1:9/v1?api_key=KEY", "m", max_retries=0, timeout=5)
    with pytest.raises(ModelError) as info:
        await model.sample([{"role": "user", "content": "hi"}])
    await model.aclose()
    assert "KEY" not in str(info.value)
    assert "http://***@127.0.0.1:9/v1?api_key=***" in str(info.value)
    assert "KEY" not in repr(model)
    with pytest.raises(ConfigError) as bad:
        OpenAICompatible("ftp://user:KEY@h/v1")
    assert "KEY" not in str(bad.value)
    with pytest.raises(ConfigError) as unknown:
        async with open_model("htp://user:KEY@h/v1"):
            pass
    assert "KEY" not in str(unknown.value)
    with pytest.raises(ConfigError) as not_redis:
        check_url("http://user:KEY@h?password=KEY")
    assert "KEY" not in str(not_redis.value)


def test_reports_and_traces_are_redacted(tmp_path: Path) -> None:
    report = RunReport(
        task="hanoi",
        steps=1,
        total_steps=3,
        completed=False,
        samples=2,
        wall_seconds=0.1,
        failure="ModelError: model server http://u:KEY@h/v1 failed",
        error_messages=["step 1: Authorization: Bearer KEY"],
    )
    report.write(tmp_path / "r.json")
    text = (tmp_path / "r.json").read_text()
    assert "KEY" not in text and "http://***@h/v1" in text
    trace = JsonlTrace(tmp_path / "t.jsonl")
    trace(Event("subtask_finished", {"id": "a", "error": "ModelError: http://u:KEY@h/v1 ?password=KEY"}, 1.0))
    trace.close()
    line = json.loads((tmp_path / "t.jsonl").read_text())
    assert line["error"] == "ModelError: http://***@h/v1 ?password=***"


def test_bench_gaia_never_prints_or_stores_the_key_of_the_model_url(tmp_path: Path) -> None:
    out = tmp_path / "out"
    url = "http://user:SECRET@127.0.0.1:9/v1?api_key=SECRET2"
    cmd = [*MDAP, "bench", "gaia", "--data", "mini", "--model", url, "--out", str(out), "--limit", "2"]
    done = subprocess.run([*cmd, "--no-progress"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "ModelError: model server http://***@127.0.0.1:9/v1?api_key=***" in done.stdout
    assert "SECRET" not in done.stdout + done.stderr
    files = sorted(p.name for p in out.iterdir())
    assert {"run.json", "summary.json"} <= set(files)
    for path in out.rglob("*"):
        if path.is_file():
            assert b"SECRET" not in path.read_bytes(), path
    assert json.loads((out / "run.json").read_text())["model"] == "http://***@127.0.0.1:9/v1?api_key=***"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "http://***@127.0.0.1:9/v1?api_key=***" and len(summary["errors"]) == 2


def test_hanoi_errors_reports_and_traces_never_show_the_key(tmp_path: Path) -> None:
    report, trace = tmp_path / "r.json", tmp_path / "t.jsonl"
    cmd = [*MDAP, "hanoi", "--disks", "2", "--no-progress", "--model", "http://u:SECRET@127.0.0.1:9/v1"]
    cmd += ["--run-dir", str(tmp_path / "run"), "--report", str(report), "--trace", str(trace)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "mdap: error: ModelError: model server http://***@127.0.0.1:9/v1" in done.stderr
    assert "SECRET" not in done.stdout + done.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"SECRET" not in path.read_bytes(), path


def test_the_cli_redacts_errors_bugs_and_log_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    import argparse

    import mdap.cli as cli

    def handler_raising(err: Exception) -> object:
        def handler(args: argparse.Namespace) -> int:
            logging.getLogger("mdap.test_secrets").warning("connecting to %s", "redis://:KEY@h:6379")
            raise err

        return handler

    for err, shown, code in [
        (ModelError("server http://u:KEY@h/v1 refused"), "mdap: error: ModelError: server http://***@h/v1 refused", 1),
        (ConfigError("bad --model http://h/v1?api_key=KEY"), "mdap: error: bad --model http://h/v1?api_key=***", 2),
        (RuntimeError("a bug near Authorization: Bearer KEY"), "RuntimeError: a bug near Authorization: Bearer ***", 1),
    ]:
        parser = argparse.ArgumentParser()
        parser.set_defaults(handler=handler_raising(err))
        monkeypatch.setattr(cli, "build_parser", lambda p=parser: p)
        with caplog.at_level(logging.WARNING, logger="mdap.test_secrets"):
            assert cli.main([]) == code
        printed = capsys.readouterr().err
        assert shown in printed and "KEY" not in printed
        assert "connecting to redis://***@h:6379" in caplog.text and "KEY" not in caplog.text
        caplog.clear()
