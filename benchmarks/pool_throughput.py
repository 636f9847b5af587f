"""Pool throughput: steps/s of the Redis worker pool with 1 and 2 workers vs. the in-process pool.

A Hanoi chain is sequential (each step needs the state the previous one produced), so one chain cannot go
faster on more workers. Throughput across workers comes from *concurrent runs*: this benchmark runs ``--chains``
Hanoi chains at once from one coordinator process, all through the same pool, and counts decided steps per
second over the whole batch. Each step is one vote (k=3 samples, usually one model request of n=3).

Pools compared, per model latency (0 s and 50 ms per model request by default):
  * in-process: ``LocalPool(concurrency=c)`` -- the chains' votes run on this process's event loop, at most
    ``c`` at once (the capacity of one worker);
  * redis 1w / 2w: 1 or 2 ``mdap worker --concurrency c`` processes serve the chains through a redis-server
    this script starts (no persistence) on a free loopback port.
With zero latency the work is pure CPU, so the figure is the pool's overhead per step (the in-process pool
has none: steps/s is the executor's own speed). With 50 ms latency a step's time is the model's, so the pool
should scale with workers: 2 workers hold 2c requests in flight.

    python benchmarks/pool_throughput.py                    # 8 chains; 8 disks at 0 s, 5 disks at 50 ms
    python benchmarks/pool_throughput.py --chains 4 --concurrency 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mdap import Executor, FirstToAheadByK
from mdap.evals.hanoi import hanoi_chain, simulated_hanoi_model
from mdap.pool import LocalPool, Pool, RedisPool, pool_status


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_batch(pool: Pool, chains: int, disks: int, latency: float) -> tuple[int, float]:
    """Run ``chains`` Hanoi chains concurrently on ``pool``; return (steps decided, wall seconds)."""
    model = simulated_hanoi_model(error_rate=0.002, latency_s=latency) if isinstance(pool, LocalPool) else None
    t0 = time.perf_counter()
    reports = await asyncio.gather(
        *(Executor(model, FirstToAheadByK(k=3), pool=pool).run(hanoi_chain(disks)) for _ in range(chains))
    )
    wall = time.perf_counter() - t0
    assert all(r.ok for r in reports), [r.failure or r.error_messages for r in reports if not r.ok]
    return sum(r.steps for r in reports), wall


async def run_redis(url: str, chains: int, disks: int) -> tuple[int, float]:
    async with RedisPool(url, role="hanoi") as pool:
        return await run_batch(pool, chains, disks, 0.0)


def start_workers(url: str, n: int, concurrency: int, latency: float, tmp: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        cmd = [sys.executable, "-m", "mdap.cli", "worker", "--redis", url, "--role", "hanoi"]
        cmd += ["--concurrency", str(concurrency), "--latency", str(latency), "--error-rate", "0.002"]
        with open(tmp / f"worker{i}.log", "wb") as log:
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 20
    while len(asyncio.run(pool_status(url)).workers) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers did not start; see {tmp}/worker*.log")
        time.sleep(0.05)
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        if proc.wait(20) != 0:
            raise RuntimeError(f"worker {proc.pid} exited with {proc.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=8, help="concurrent Hanoi runs (default 8)")
    parser.add_argument("--concurrency", type=int, default=4, help="steps in flight per worker (default 4)")
    parser.add_argument("--disks0", type=int, default=8, help="disks per chain at zero latency (default 8)")
    parser.add_argument("--disks50", type=int, default=5, help="disks per chain at 50 ms latency (default 5)")
    args = parser.parse_args()
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    c = args.concurrency
    print(f"{args.chains} concurrent Hanoi chains, k=3, per-sample error 0.002; worker concurrency {c}; "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'latency':>8} {'pool':<22} {'steps':>6} {'wall s':>7} {'steps/s':>8} {'vs in-process':>13}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        redis = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp_name],
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}"
        try:
            time.sleep(0.3)
            for latency, disks in ((0.0, args.disks0), (0.05, args.disks50)):
                steps, wall = asyncio.run(run_batch(LocalPool(concurrency=c), args.chains, disks, latency))
                base = steps / wall
                print(f"{latency * 1000:>6.0f}ms {f'in-process (c={c})':<22} {steps:>6} {wall:>7.2f} {base:>8.0f} "
                      f"{1.0:>13.2f}", flush=True)  # fmt: skip
                one = 0.0
                for n in (1, 2):
                    procs = start_workers(url, n, c, latency, tmp)
                    try:
                        steps, wall = asyncio.run(run_redis(url, args.chains, disks))
                    finally:
                        stop_workers(procs)
                    rate = steps / wall
                    one = one or rate
                    label = f"redis {n} worker{'s' if n > 1 else ''} (c={c})"
                    print(f"{latency * 1000:>6.0f}ms {label:<22} {steps:>6} {wall:>7.2f} {rate:>8.0f} "
                          f"{rate / base:>13.2f}", flush=True)  # fmt: skip
                print(f"{'':>8} 2 workers / 1 worker: {rate / one:.2f}x", flush=True)
        finally:
            redis.terminate()
            redis.wait()


if __name__ == "__main__":
    main()
