"""mdap over HTTP vs a bare aiohttp loop, on ``mdap serve --simulated`` (its own process): what mdap's wire costs.

Hanoi (10 disks by default, 1,023 steps), p = 0.99 (the server's ``--error-rate 0.01``), k = 3, MAKER's
temperatures: each step's first sample at 0, the rest at 0.1. Contenders, interleaved, median of ``--reps``:

  * mdap: ``Executor(OpenAICompatible(url), FirstToAheadByK.maker(k=3)).run(hanoi_chain(disks))``; a step's first
    round is 2 requests sent together (the greedy sample; n=2 at 0.1);
  * bare: ~70 lines below -- aiohttp, k concurrent posts per step (the first greedy), a regex parse, a vote on
    texts, more posts until one answer leads by k;
  * mdap n=k: mdap with every sample at 0.1 (one n=3 request per step: not MAKER, shown for what the greedy
    first sample costs).

Then chains through one client (default settings): 1 and 8 chains at 20 ms, and 8 and ``--many`` (1,000) chains
at 50 ms, with aggregate steps/s and client CPU per step (``time.process_time``: the server's CPU is not counted).

    python benchmarks/http_overhead.py                         # the full run (several minutes)
    python benchmarks/http_overhead.py --disks 7 --reps 1 --many 200 --many-disks 3   # a quick look

Needs aiohttp (an mdap dependency: pip install aiohttp if you run this without mdap installed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable

import aiohttp

from mdap import Executor, FirstToAheadByK, OpenAICompatible
from mdap.evals.hanoi import HanoiStep, hanoi_chain
from mdap.models._process import free_port

K = 3
_ANSWER = re.compile(r"move = \[(\d+), (\d+), (\d+)\]\nnext_state = (\[.*\])")


def serve_simulated(*flags: str) -> tuple[subprocess.Popen[bytes], str]:
    """``mdap serve --simulated FLAGS`` in its own process, once healthy; returns it and its base URL (``.../v1``)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mdap.cli", "serve", "--simulated", "--port", str(port), *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{root}/health", timeout=1).read()
            return proc, f"{root}/v1"
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("mdap serve --simulated did not start") from None
            time.sleep(0.1)


def start_server(latency_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    """``mdap serve --simulated --task hanoi`` at ``latency_ms``; returns it and its base URL."""
    return serve_simulated("--task", "hanoi", "--error-rate", "0.01", "--latency-ms", str(latency_ms))


# ---- the bare loop ------------------------------------------------------------------------------------------
async def bare_chain(session: aiohttp.ClientSession, url: str, disks: int, sent: list[int]) -> int:
    """Solve Hanoi by first-to-ahead-by-k with plain posts; returns the steps decided (``sent[0]``: requests)."""
    ms = HanoiStep(disks)
    state = ms.initial()

    async def post(messages: list[dict[str, str]], temperature: float) -> str | None:
        sent[0] += 1
        body = {"model": "simulated", "messages": messages, "temperature": temperature, "max_tokens": 750}
        async with session.post(f"{url}/chat/completions", data=json.dumps(body)) as response:
            data = json.loads(await response.read())
        choice = data["choices"][0]
        if choice["finish_reason"] == "length":
            return None  # red flag
        return str(choice["message"]["content"])

    for _ in range(ms.steps):
        messages = ms.render(state)
        tally: dict[str, int] = {}
        temps = [0.0] + [0.1] * (K - 1)
        while True:
            for text in await asyncio.gather(*(post(messages, t) for t in temps)):
                if text is not None and _ANSWER.fullmatch(text):
                    tally[text] = tally.get(text, 0) + 1
            counts = [*sorted(tally.values(), reverse=True), 0, 0]
            lead = counts[0] - counts[1]
            if lead >= K:
                break
            temps = [0.1] * (K - lead)
        best = max(tally, key=lambda t: tally[t])
        state = ms.apply(state, ms.parse(best))
    return ms.steps


async def bare(url: str, disks: int, chains: int = 1) -> tuple[int, int]:
    sent = [0]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        steps = await asyncio.gather(*(bare_chain(session, url, disks, sent) for _ in range(chains)))
    return sum(steps), sent[0]


# ---- mdap ---------------------------------------------------------------------------------------------------
async def mdap(url: str, disks: int, chains: int = 1, *, maker: bool = True) -> tuple[int, int]:
    voter = FirstToAheadByK.maker(k=K) if maker else FirstToAheadByK(k=K, temperature=0.1, max_tokens=750)
    async with OpenAICompatible(url, "simulated") as model:
        report = await Executor(model, voter).run_many([hanoi_chain(disks) for _ in range(chains)])
        assert report.completed, report.failure
        return report.steps, model.requests


Runner = Callable[[str, int, int], Awaitable[tuple[int, int]]]


def measure(run: Runner, url: str, disks: int, chains: int = 1) -> tuple[float, float, int]:
    """(steps/s, client CPU ms per step, requests) of one run."""
    c0, t0 = time.process_time(), time.perf_counter()
    steps, requests = asyncio.run(run(url, disks, chains))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return steps / wall, cpu / steps * 1000, requests


def head_to_head(latency_ms: float, disks: int, reps: int) -> None:
    proc, url = start_server(latency_ms)
    contenders: dict[str, Runner] = {
        "mdap": mdap,
        "bare aiohttp": bare,
        "mdap n=k (no greedy)": lambda u, d, c: mdap(u, d, c, maker=False),
    }
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    cpus: dict[str, list[float]] = {name: [] for name in contenders}
    requests: dict[str, int] = {}
    try:
        for run in contenders.values():  # warm-up: imports, first connections
            measure(run, url, 3)
        for _ in range(reps):
            for name, run in contenders.items():
                rate, cpu, req = measure(run, url, disks)
                rates[name].append(rate)
                cpus[name].append(cpu)
                requests[name] = req
    finally:
        proc.terminate()
        proc.wait(10)
    bare_rate = statistics.median(rates["bare aiohttp"])
    for name in contenders:
        rate = statistics.median(rates[name])
        req = f"{requests[name] / (2**disks - 1):>9.2f}"
        print(f"{latency_ms:>6.0f}ms {name:<22} {rate:>9.1f} {statistics.median(cpus[name]):>11.3f} {req} "
              f"{rate / bare_rate:>8.2f}x", flush=True)  # fmt: skip


def chains_through_one_client(latency_ms: float, runs: list[tuple[int, int]]) -> None:
    proc, url = start_server(latency_ms)
    try:
        measure(mdap, url, 3)  # warm-up: imports, first connections
        one = 0.0
        for chains, disks in runs:
            rate, cpu, req = measure(mdap, url, disks, chains)
            one = one or rate
            print(f"{latency_ms:>6.0f}ms {chains:>6} chains x {disks:>2} disks {rate:>10.1f} {cpu:>11.3f} "
                  f"{req / (chains * (2**disks - 1)):>9.2f} {rate / one:>8.2f}x", flush=True)  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--disks", type=int, default=10, help="disks of the head-to-head runs (default 10)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions, median shown (default 3)")
    parser.add_argument("--chain-disks", type=int, default=7, help="disks per chain of the 1/8-chain runs (7)")
    parser.add_argument("--many", type=int, default=1000, help="chains of the many-chains run (default 1000)")
    parser.add_argument("--many-disks", type=int, default=4, help="disks per chain of the many-chains run (4)")
    args = parser.parse_args()
    print(f"Hanoi {args.disks} disks, p=0.99, k={K}, MAKER temperatures (0 then 0.1); median of {args.reps} "
          "interleaved runs; server: mdap serve --simulated (own process)")  # fmt: skip
    print(f"{'latency':>8} {'client':<22} {'steps/s':>9} {'CPU ms/st':>11} {'req/step':>9} {'vs bare':>9}")
    for latency in (0.0, 20.0):
        head_to_head(latency, args.disks, args.reps)
    cap = OpenAICompatible("http://127.0.0.1:1/v1").max_concurrency
    print(f"\nchains through one OpenAICompatible (default settings: max_concurrency={cap})")
    print(f"{'latency':>8} {'runs':<24} {'steps/s':>10} {'CPU ms/st':>11} {'req/step':>9} {'vs first':>9}")
    chains_through_one_client(20.0, [(1, args.chain_disks), (8, args.chain_disks)])
    chains_through_one_client(50.0, [(8, args.chain_disks), (args.many, args.many_disks)])


if __name__ == "__main__":
    main()
