"""`mdap hanoi` as a user runs it: reports, bad input, and a killed run resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mdap.cli import main


def run(*args: str) -> int:
    try:
        return main(["hanoi", "--no-progress", *args])
    except SystemExit as exit:  # argparse rejects a bad flag value itself (exit 2)
        return int(exit.code or 0)


def test_writes_the_report_with_the_promised_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r.json"
    code = run("--disks", "6", "--error-rate", "0.05", "--run-dir", str(tmp_path), "--report", str(report))
    assert code == 0
    data = json.loads(report.read_text())
    assert {"steps", "verifier_errors", "samples", "red_flags", "wall_seconds"} <= data.keys()
    assert data["steps"] == 63 and data["verifier_errors"] == 0 and data["samples"] >= 63 * 3
    assert "mean_samples_per_step" in capsys.readouterr().out


def test_a_failing_run_exits_1(tmp_path: Path) -> None:
    code = run("--disks", "4", "--k", "1", "--error-rate", "0.5", "--correlation", "1", "--run-dir", str(tmp_path))
    assert code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--disks", "-3"], "disks"),
        (["--disks", "0"], "disks"),
        (["--model", "gpt-17"], "unknown model 'gpt-17'"),
        (["--error-rate", "1.5"], "--error-rate"),
        (["--error-rate", "0.7", "--red-flag-rate", "0.7"], "at most 1"),
        (["--k", "2", "--max-samples", "1"], "max_samples"),
    ],
)
def test_bad_input_is_named(args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--run-dir", str(tmp_path), *args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("k", ["0", "-2", "many"])
def test_bad_k_is_named(k: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--k", k) == 2
    assert "--k" in capsys.readouterr().err


def test_resume_needs_a_readable_checkpoint_and_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.jsonl"
    assert run("--disks", "3", "--run-dir", str(tmp_path), "--resume") == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert run("--disks", "5", "--run-dir", str(tmp_path), "--trace", str(trace), "--checkpoint-every", "4") == 0
    trace.write_text("this is not a trace\n")
    assert run("--disks", "5", "--run-dir", str(tmp_path), "--trace", str(trace), "--resume") == 2
    assert "trace" in capsys.readouterr().err


def test_killed_run_resumes_without_redoing_more_than_one_interval(tmp_path: Path) -> None:
    every = 2000
    args = [sys.executable, "-m", "mdap.cli", "hanoi", "--disks", "16", "--no-progress", "--run-dir", str(tmp_path)]
    args += ["--trace", str(tmp_path / "t.jsonl"), "--checkpoint-every", str(every), "--error-rate", "0.002"]
    ckpt = tmp_path / "checkpoint.json"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (ckpt.exists() and json.loads(ckpt.read_text())["next_step"] >= every):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(ckpt.read_text())["next_step"]
    assert 0 < killed_at < 65535, "the run must be killed midway"

    report = tmp_path / "r.json"
    done = subprocess.run([*args, "--resume", "--report", str(report)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    assert data["resumed_from"] == killed_at
    assert data["steps"] == 65535 and data["verifier_errors"] == 0
    steps = [json.loads(line)["step"] for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert steps == list(range(65535))
