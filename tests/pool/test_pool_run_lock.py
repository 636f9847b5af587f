"""A pool run has one coordinator: a second `mdap hanoi --pool ... --resume` on its run directory exits 2 at once
(it used to run beside the first, leaving duplicate steps in the trace while the survivor exited 0)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from pool_helpers import RedisServer, Workers, wait_until

FAST = ["--heartbeat", "0.3", "--claim-idle", "1"]


def hanoi(url: str, tmp: Path, *args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mdap.cli", "hanoi", "--no-progress", "--pool", url, "--run-dir", str(tmp / "run")]
    return subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_resumes_of_a_pool_run_one_coordinator_exits_2(
    redis_server: RedisServer, workers: Workers, tmp_path: Path
) -> None:
    url = redis_server.url
    workers.start(url, "--concurrency", "2", "--latency", "0.005", *FAST)
    trace = tmp_path / "t.jsonl"
    args = ["--disks", "10", "--trace", str(trace), "--checkpoint-every", "50"]
    ckpt, lock = tmp_path / "run" / "checkpoint.json", tmp_path / "run" / "checkpoint.json.lock"
    first = hanoi(url, tmp_path, *args)
    wait_until(lambda: ckpt.exists() and json.loads(ckpt.read_text())["next_step"] >= 100, 60, "a checkpoint")
    first.send_signal(signal.SIGKILL)
    first.wait()

    resumed = hanoi(url, tmp_path, *args, "--resume")
    wait_until(lambda: lock.read_text().strip() == str(resumed.pid), 30, "the resumed run's lock")
    second = hanoi(url, tmp_path, *args, "--resume")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2
    assert resumed.poll() is None, "the second coordinator must have been refused while the first ran"
    assert f"run directory {tmp_path / 'run'} is in use by pid {resumed.pid} (another mdap coordinator)" in err.decode()
    _, err = resumed.communicate(timeout=90)
    assert resumed.returncode == 0, err.decode()
    steps = [json.loads(line)["step"] for line in trace.read_text().splitlines()]
    assert steps == list(range(1023)), "every step exactly once: no second coordinator wrote to the trace"
