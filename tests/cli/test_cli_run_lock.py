"""`mdap hanoi` run directories: one coordinator at a time, and a resume that checks before it touches."""

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

MDAP = [sys.executable, "-m", "mdap.cli"]


def run(*args: str) -> int:
    return main(["hanoi", "--no-progress", *args])


def wait_for(predicate: object, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def test_a_second_coordinator_exits_2_naming_the_holder_and_the_lock_dies_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rd = tmp_path / "rd"
    ckpt, lock = rd / "checkpoint.json", rd / "checkpoint.json.lock"
    args = ["--disks", "12", "--run-dir", str(rd), "--checkpoint-every", "50"]
    holder = subprocess.Popen(
        [*MDAP, "hanoi", "--no-progress", *args, "--latency", "0.002"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: ckpt.exists() and lock.read_text().strip() == str(holder.pid), "the first checkpoint")
        theirs = ckpt.read_bytes()
        for extra in (["--resume"], []):  # neither resuming nor starting over may run beside the holder
            assert run(*args, *extra) == 2
            assert capsys.readouterr().err == (
                f"mdap: error: run directory {rd} is in use by pid {holder.pid} (another mdap coordinator); "
                "wait for it or use another --run-dir\n"
            )
        assert holder.poll() is None
        assert json.loads(ckpt.read_text())["next_step"] >= json.loads(theirs)["next_step"]  # still the holder's
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    killed_at = json.loads(ckpt.read_text())["next_step"]
    assert 0 < killed_at < 4095, "the holder must be killed mid-run"
    report = tmp_path / "r.json"
    assert run(*args, "--resume", "--report", str(report)) == 0  # no stale lock to clean up by hand
    data = json.loads(report.read_text())
    assert data["resumed_from"] == killed_at and data["steps"] == 4095


def test_resume_with_a_trace_the_checkpoint_did_not_write_leaves_it_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "existing.jsonl"
    existing.write_text("".join(f'{{"line": {i}}}\n' for i in range(1000)))
    before = existing.read_bytes()
    assert run("--disks", "5", "--run-dir", str(tmp_path), "--checkpoint-every", "4") == 0  # no trace
    assert run("--disks", "5", "--run-dir", str(tmp_path), "--resume", "--trace", str(existing)) == 2
    assert "written without a trace" in capsys.readouterr().err
    assert existing.read_bytes() == before

    mine = tmp_path / "mine.jsonl"
    assert run("--disks", "5", "--run-dir", str(tmp_path), "--trace", str(mine), "--checkpoint-every", "4") == 0
    assert run("--disks", "5", "--run-dir", str(tmp_path), "--resume", "--trace", str(existing)) == 2
    err = capsys.readouterr().err
    assert f"rerun without --resume to start over, or pass the trace this checkpoint wrote: {mine.resolve()}" in err
    assert existing.read_bytes() == before


def test_resume_with_the_checkpoint_offset_moved_back_exits_2_and_keeps_the_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.jsonl"
    args = ["--disks", "8", "--run-dir", str(tmp_path), "--trace", str(trace), "--checkpoint-every", "50"]
    assert run(*args) == 0
    ckpt = tmp_path / "checkpoint.json"
    data = json.loads(ckpt.read_text())
    data["trace_bytes"] = sum(map(len, trace.read_bytes().splitlines(keepends=True)[:100]))
    ckpt.write_text(json.dumps(data))
    before = trace.read_bytes()
    assert run(*args, "--resume") == 2
    assert "is step 99, but the checkpoint continues after step 254" in capsys.readouterr().err
    assert trace.read_bytes() == before


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe\x00\x81\x00\x00binary",
        b"\x89PNG\r\n\x1a\n",
        b"",
        b"[]",
        b'{"version": 2, "task": "hanoi:5", "next_step": "many"}',
    ],
)
def test_a_garbage_checkpoint_exits_2_with_a_message(
    raw: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "checkpoint.json").write_bytes(raw)
    assert run("--disks", "5", "--run-dir", str(tmp_path), "--resume") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mdap: error: checkpoint {tmp_path / 'checkpoint.json'} is ") or err.startswith(
        f"mdap: error: {tmp_path / 'checkpoint.json'} is unreadable"
    )
    assert "rerun without --resume" in err


def test_a_binary_checkpoint_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.json").write_bytes(b"\xff" + os.urandom(64))
    done = subprocess.run(
        [*MDAP, "hanoi", "--disks", "5", "--no-progress", "--run-dir", str(tmp_path), "--resume"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("mdap: error: checkpoint") and "unreadable" in done.stderr
