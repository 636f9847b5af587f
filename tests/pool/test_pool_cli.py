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


def status(url: str) -> PoolStatus:
    return asyncio.run(pool_status(url))


def hanoi(url: str, tmp: Path, *args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mdap.cli", "hanoi", "--no-progress", "--pool", url, "--run-dir", str(tmp / "run")]
    return subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def trace_steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_three_workers_run_a_10_disk_hanoi_and_drain_on_sigterm(
    redis_server: RedisServer, workers: Workers, tmp_path: Path
) -> None:
    url = redis_server.url
    for _ in range(3):
        workers.start(url, "--model", "simulated", "--error-rate", "0.01", *FAST)
    wait_until(lambda: len(status(url).workers) == 3, 15, "3 live workers")
    report = tmp_path / "r.json"
    proc = hanoi(url, tmp_path, "--disks", "10", "--report", str(report))
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err.decode()
    data = json.loads(report.read_text())
    assert data["steps"] == 1023 and data["errors"] == 0 and data["completed"]
    st = status(url)
    (role,) = st.roles
    assert role.role == "hanoi" and role.workers == 3
    assert role.done == 1023 and role.queued == 0 and role.pending == 0 and role.dead_letter == 0
    wait_until(lambda: sum(w.done for w in status(url).workers) == 1023, 5, "heartbeats to count every step")
    assert sum(1 for w in st.workers if w.done > 0) >= 2, "the steps should spread over the workers"
    assert workers.stop_all() == [0, 0, 0]
    assert status(url).workers == []
    assert "stopped after" in workers.output()


def test_a_worker_killed_mid_run_loses_nothing(redis_server: RedisServer, workers: Workers, tmp_path: Path) -> None:
    url = redis_server.url
    for _ in range(3):
        workers.start(url, "--error-rate", "0.01", "--latency", "0.004", *FAST)
    wait_until(lambda: len(status(url).workers) == 3, 15, "3 live workers")
    trace, report = tmp_path / "t.jsonl", tmp_path / "r.json"
    proc = hanoi(url, tmp_path, "--disks", "10", "--trace", str(trace), "--report", str(report))
    wait_until(lambda: (status(url).roles or [None])[0] is not None and status(url).roles[0].done >= 150, 60, "150")
    pids = {w.id: w.pid for w in status(url).workers}
    client = redis.Redis.from_url(url)
    victim = None
    for _ in range(500):  # freeze workers one by one until one is caught holding a step, then kill it
        for worker_id, pid in pids.items():
            os.kill(pid, signal.SIGSTOP)
            held = client.xpending_range("mdap:steps:hanoi", "workers", "-", "+", 5, consumername=worker_id)
            if held:
                os.kill(pid, signal.SIGKILL)
                victim = worker_id
                break
            os.kill(pid, signal.SIGCONT)
        if victim:
            break
    assert victim is not None, "no worker was caught holding a step"
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err.decode()
    data = json.loads(report.read_text())
    assert data["steps"] == 1023 and data["errors"] == 0
    steps = trace_steps(trace)
    assert steps == list(range(1023)), "every step decided exactly once, in order"
    assert not [s for s, n in Counter(steps).items() if n > 1]
    role = status(url).roles[0]
    assert role.reclaimed > 0
    assert role.dead_letter == 0 and role.pending == 0
    assert (
        victim not in {w.id for w in status(url).workers}
        or wait_until(
            lambda: victim not in {w.id for w in status(url).workers}, 5, "the dead worker's heartbeat to expire"
        )
        is None
    )


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
    assert data["steps"] == 255 and data["errors"] == 0
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
    assert role.done + role.duplicate >= 511 and done_before + (511 - done_before) >= role.done - role.duplicate


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


def test_credentials_are_never_printed(redis_factory: object, workers: Workers, tmp_path: Path) -> None:
    secret = "s3cr3t-pa55"
    server: RedisServer = redis_factory("--appendonly", "no", password=secret)  # type: ignore[operator]
    url = server.url
    workers.start(url, "--verbose", *FAST)
    proc = hanoi(url, tmp_path, "--disks", "5")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    status_out = subprocess.run(
        [sys.executable, "-m", "mdap.cli", "pool", "status", "--redis", url], capture_output=True, check=True
    )
    assert b"hanoi" in status_out.stdout
    wrong = url.replace(secret, "wrong-" + secret)
    denied = subprocess.run(
        [sys.executable, "-m", "mdap.cli", "pool", "status", "--redis", wrong], capture_output=True, check=False
    )
    assert denied.returncode == 1 and b"cannot reach Redis" in denied.stderr
    assert workers.stop_all() == [0]
    logs = workers.output()
    assert "redis://***@127.0.0.1" in logs
    everything = logs + (out + err + status_out.stdout + status_out.stderr + denied.stderr).decode()
    assert secret not in everything


def test_tls_with_rediss_and_a_password(redis_factory: object, workers: Workers, tmp_path: Path) -> None:
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
    workers.start(url, *FAST)
    proc = hanoi(url, tmp_path, "--disks", "4", "--report", str(tmp_path / "r.json"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert json.loads((tmp_path / "r.json").read_text())["steps"] == 15
    plain = hanoi(f"redis://:tls-s3cret@127.0.0.1:{server.port}", tmp_path, "--disks", "4")  # no TLS: no answer
    _, plain_err = plain.communicate(timeout=60)
    assert plain.returncode == 1 and b"cannot reach Redis at redis://***@127.0.0.1" in plain_err
    mixed = hanoi(url.replace("rediss://", "redis://"), tmp_path, "--disks", "4")  # TLS options on redis://
    _, mixed_err = mixed.communicate(timeout=60)
    assert mixed.returncode == 2 and b"need a rediss:// URL" in mixed_err
    plain_err += mixed_err
    assert workers.stop_all() == [0]
    assert "tls-s3cret" not in workers.output() + (out + err + plain_err).decode()
