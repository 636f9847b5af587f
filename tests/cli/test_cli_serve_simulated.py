"""``mdap serve --simulated`` as a user runs it (its own process), and ``mdap hanoi`` over HTTP through it: the
MAKER preset, several runs through one client, and the samples the server saw equal to those the report counts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mdap.cli import main
from mdap.models._process import free_port


def wait_healthy(root: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{root}/health", timeout=1) as response:
                assert response.status == 200
                return
        except OSError:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "mdap serve --simulated did not become healthy in 30 s"
            time.sleep(0.1)


@pytest.fixture
def served() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    cmd = [sys.executable, "-m", "mdap.cli", "serve", "--simulated", "--task", "hanoi", "--port", str(port)]
    cmd += ["--error-rate", "0.05", "--seed", "3", "--latency-ms", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(root, proc)
        yield root, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def stats(root: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{root}/sim/stats", timeout=5) as response:
        data: dict[str, int] = json.loads(response.read())
        return data


def test_hanoi_over_http_with_the_maker_preset_and_three_runs(
    served: tuple[str, subprocess.Popen[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = served
    report = tmp_path / "report.json"
    argv = ["hanoi", "--no-progress", "--model", f"{root}/v1", "--disks", "4", "--runs", "3", "--preset", "maker"]
    code = main([*argv, "--run-dir", str(tmp_path), "--report", str(report)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data["steps"] == 3 * 15 and data["verifier_errors"] == 0 and data["k"] == 3
    assert sorted(data["modules"]) == ["run0", "run1", "run2"]
    assert all(m["steps"] == 15 for m in data["modules"].values())
    seen = stats(root)
    assert seen["samples"] == data["samples"]  # no sample drawn that the report does not count
    # MAKER: each step's first round is 2 requests (the greedy sample, n=2 at 0.1); contested steps add rounds
    assert 2 * data["steps"] <= seen["requests"] <= 2 * data["steps"] + (data["samples"] - 3 * data["steps"])
    assert "runs" in capsys.readouterr().out


def test_sigterm_stops_the_server_cleanly(served: tuple[str, subprocess.Popen[str]]) -> None:
    root, proc = served
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert f"at {root}/v1" in out and "server stopped" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--simulated", "--error-rate", "1.5"], "--error-rate"),
        (["--simulated", "--latency-ms", "nan"], "--latency-ms"),
        (["--simulated", "--fault-rate", "-0.1"], "--fault-rate"),
        (["--simulated", "--port", "70000"], "--port"),
        (["--simulated", "--task", "chess"], "--task"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", *args])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_serve_needs_a_base_or_simulated(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "--base" in err and "--simulated" in err
