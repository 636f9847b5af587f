"""The Redis pool as a user drives it: `mdap worker` processes, `mdap hanoi --pool`, `mdap pool status`.

Real redis-server processes (see conftest.py); a killed worker, a restarted Redis, a killed coordinator.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import redis
from pool_helpers import RedisServer, Workers, free_port, wait_until

from mdap.pool import PoolStatus, pool_status

FAST = ["--heartbeat", "0.3", "--claim-idle", "1"]
MDAP = [sys.executable, "-m", "mdap.cli"]


def status(url: str) -> PoolStatus:
    return asyncio.run(pool_status(url))


def hanoi(url: str, tmp: Path, *args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mdap.cli", "hanoi", "--no-progress", "--pool", url, "--run-dir", str(tmp / "run")]
    return subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def trace_steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def catch_and_kill_a_busy_worker(url: str) -> str:
    """Freeze workers one by one until one is caught holding a step, then SIGKILL it; return its id."""
    pids = {w.id: w.pid for w in status(url).workers}
    client = redis.Redis.from_url(url)
    for _ in range(2000):
        for worker_id, pid in pids.items():
            os.kill(pid, signal.SIGSTOP)
            if client.xpending_range("mdap:steps:hanoi", "workers", "-", "+", 5, consumername=worker_id):
                os.kill(pid, signal.SIGKILL)
                return worker_id
            os.kill(pid, signal.SIGCONT)
    raise AssertionError("no worker was caught holding a step")


def test_three_workers_run_10_disks_survive_a_sigkill_and_drain_on_sigterm(
    redis_server: RedisServer, workers: Workers, tmp_path: Path
) -> None:
    """The issue's scenario: 3 `mdap worker` processes, `mdap hanoi --disks 10 --pool ...`; one worker killed."""
    url = redis_server.url
    for _ in range(3):
        workers.start(url, "--model", "simulated", "--error-rate", "0.01", "--latency", "0.002", *FAST)
    wait_until(lambda: len(status(url).workers) == 3, 20, "3 live workers")
    trace, report = tmp_path / "t.jsonl", tmp_path / "r.json"
    proc = hanoi(url, tmp_path, "--disks", "10", "--report", str(report), "--trace", str(trace))
    wait_until(lambda: bool(status(url).roles) and status(url).roles[0].done >= 100, 60, "100 steps")
    victim = catch_and_kill_a_busy_worker(url)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err.decode()
    data = json.loads(report.read_text())
    assert data["steps"] == 1023 and data["verifier_errors"] == 0 and data["completed"]
    steps = trace_steps(trace)
    assert steps == list(range(1023)), "every step decided exactly once, in order"
    assert not [s for s, n in Counter(steps).items() if n > 1]
    role = status(url).roles[0]
    assert role.role == "hanoi" and role.reclaimed > 0
    assert role.done == 1023 and role.queued == 0 and role.pending == 0 and role.dead_letter == 0
    wait_until(lambda: victim not in {w.id for w in status(url).workers}, 5, "the dead worker's heartbeat to expire")
    survivors = status(url).workers
    assert len(survivors) == 2 and all(w.done > 0 for w in survivors), "the steps spread over the workers"
    codes = [c for c in workers.stop_all() if c != -signal.SIGKILL]
    assert codes == [0, 0], f"SIGTERM drains, exit 0; the workers' logs:\n{workers.output()[-6000:]}"
    assert status(url).workers == []
    assert workers.output().count("stopped after") == 2


def test_a_redis_restart_with_aof_mid_run_loses_nothing(
    redis_factory: object, workers: Workers, tmp_path: Path
) -> None:
    server: RedisServer = redis_factory("--appendonly", "yes", "--appendfsync", "always")  # type: ignore[operator]
    url = server.url
    for _ in range(2):
        workers.start(url, "--error-rate", "0.01", "--latency", "0.003", *FAST)
    wait_until(lambda: len(status(url).workers) == 2, 15, "2 live workers")
    trace, report = tmp_path / "t.jsonl", tmp_path / "r.json"
    proc = hanoi(url, tmp_path, "--disks", "8", "--trace", str(trace), "--report", str(report))
    wait_until(lambda: bool(status(url).roles) and status(url).roles[0].done >= 40, 60, "40 steps")
    server.restart()
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err.decode()
    data = json.loads(report.read_text())
    assert data["steps"] == 255 and data["verifier_errors"] == 0
    assert trace_steps(trace) == list(range(255))
    assert status(url).roles[0].done >= 255 - 40  # the counters survived the restart (AOF)
    assert all(p.poll() is None for p in workers.procs), "workers must ride out the restart"


def test_a_killed_coordinator_resumes_its_run_from_the_pool(
    redis_server: RedisServer, workers: Workers, tmp_path: Path
) -> None:
    url = redis_server.url
    workers.start(url, "--concurrency", "2", *FAST)
    trace = tmp_path / "t.jsonl"
    args = ["--disks", "9", "--trace", str(trace), "--checkpoint-every", "100"]
    first = hanoi(url, tmp_path, *args)
    ckpt = tmp_path / "run" / "checkpoint.json"
    wait_until(lambda: ckpt.exists() and json.loads(ckpt.read_text())["next_step"] >= 200, 60, "a checkpoint")
    wait_until(lambda: status(url).roles[0].done % 100 > 50, 30, "steps past the checkpoint")
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_before = status(url).roles[0].done
    resumed = hanoi(url, tmp_path, *args, "--resume")
    _, err = resumed.communicate(timeout=90)
    assert resumed.returncode == 0, err.decode()
    assert trace_steps(trace) == list(range(511))
    role = status(url).roles[0]
    assert role.duplicate > 0, "steps redone after the checkpoint are answered from their stored results"
    assert role.done == 511, "over both sessions every step was sampled exactly once"
    assert done_before < 511


def test_unreachable_redis_is_a_clear_error(tmp_path: Path, workers: Workers) -> None:

    url = f"redis://:hunter2@127.0.0.1:{free_port()}"
    proc = hanoi(url, tmp_path, "--disks", "3")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "cannot reach Redis at redis://***@127.0.0.1" in err.decode()
    assert "hunter2" not in err.decode()
    worker = workers.start(url)
    assert worker.wait(20) == 1
    assert "cannot reach Redis" in workers.output() and "hunter2" not in workers.output()
    bad = hanoi("http://127.0.0.1:1", tmp_path, "--disks", "3")
    _, err = bad.communicate(timeout=20)
    assert bad.returncode == 2 and "not a Redis URL" in err.decode()


def test_tls_with_rediss_and_a_password_never_printed(redis_factory: object, workers: Workers, tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    tls = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    tls += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
    server: RedisServer = redis_factory(*tls, password="tls-s3cret", port=port)  # type: ignore[operator]
    url = f"rediss://:tls-s3cret@127.0.0.1:{server.port}?ssl_ca_certs={cert}"
    workers.start(url, "--verbose", *FAST)
    proc = hanoi(url, tmp_path, "--disks", "4", "--report", str(tmp_path / "r.json"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert json.loads((tmp_path / "r.json").read_text())["steps"] == 15
    shown = subprocess.run([*MDAP, "pool", "status", "--redis", url], capture_output=True, check=True)
    assert b"hanoi" in shown.stdout
    wrong = url.replace("tls-s3cret", "wrong-tls-s3cret")
    denied = subprocess.run([*MDAP, "pool", "status", "--redis", wrong], capture_output=True, check=False)
    assert denied.returncode == 1 and b"cannot reach Redis at rediss://***@127.0.0.1" in denied.stderr
    mixed = hanoi(url.replace("rediss://", "redis://"), tmp_path, "--disks", "4")  # TLS options on redis://
    _, mixed_err = mixed.communicate(timeout=60)
    assert mixed.returncode == 2 and b"need a rediss:// URL" in mixed_err
    assert workers.stop_all() == [0]
    logs = workers.output()
    assert "rediss://***@127.0.0.1" in logs
    printed = out + err + shown.stdout + shown.stderr + denied.stdout + denied.stderr + mixed_err
    assert "tls-s3cret" not in logs + printed.decode()


def test_sigusr1_logs_what_each_task_waits_on_and_the_worker_serves_on(
    redis_server: RedisServer, workers: Workers
) -> None:
    url = redis_server.url
    proc = workers.start(url, "--model", "simulated", *FAST)
    wait_until(lambda: len(status(url).workers) == 1, 20, "a live worker")
    proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: "mdap-worker-upkeep" in workers.output(), 10, "the task dump in the log")
    logs = workers.output()
    assert "1 tasks" not in logs and "steps in flight, draining=False" in logs
    assert "mdap-worker-slot-0" in logs and proc.poll() is None
    assert workers.stop_all() == [0]
    assert "stopped after" in workers.output()
