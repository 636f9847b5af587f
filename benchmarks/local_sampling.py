"""Samples/s of the embedded CPU vLLM server for one vote's k samples, requested three ways.

(a) k single requests one after another, (b) one request with ``n=k``, (c) k single requests at once. Every
sample is exactly ``--tokens`` tokens long (``ignore_eos``), so samples/s compare like with like. Also prints the
server's startup time and memory (RSS of the server and its worker processes).

    python benchmarks/local_sampling.py            # starts the local model (about a minute), then measures
    python benchmarks/local_sampling.py --url http://127.0.0.1:8000/v1   # an already running server

Needs ``pip install 'mdap[local]'`` (see docs/serving.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import psutil

from mdap.models import LocalModel, OpenAICompatible, Sample
from mdap.types import Message

PROMPT: list[Message] = [{"role": "user", "content": "Tell me a short story about a lighthouse keeper."}]


def tree_rss_gib(pid: int) -> float:
    """Resident memory of a process and all its descendants, in GiB."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs) / 2**30


async def timed(draw: Callable[[], Awaitable[list[Sample]]]) -> tuple[float, int, int]:
    """Seconds, samples and completion tokens of one draw."""
    t0 = time.perf_counter()
    samples = await draw()
    return time.perf_counter() - t0, len(samples), sum(s.completion_tokens for s in samples)


async def measure(client: OpenAICompatible, k: int, tokens: int, rounds: int) -> dict[str, list[float]]:
    def ask(n: int = 1) -> Awaitable[list[Sample]]:
        return client.sample(PROMPT, n=n, temperature=1.0, max_tokens=tokens)

    async def one_by_one() -> list[Sample]:
        return [s for _ in range(k) for s in await ask()]

    async def n_in_one() -> list[Sample]:
        return await ask(k)

    async def concurrent() -> list[Sample]:
        parts = await asyncio.gather(*(ask() for _ in range(k)))
        return [s for p in parts for s in p]

    ways = {"(a) one by one": one_by_one, f"(b) n={k} in one request": n_in_one, f"(c) {k} concurrent": concurrent}
    await ask()  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in ways}
    token_rates: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):  # interleaved, so load drifts hit every way alike
        for name, draw in ways.items():
            seconds, count, used = await timed(draw)
            assert count == k, f"{name}: {count} samples, wanted {k}"
            rates[name].append(count / seconds)
            token_rates[name].append(used / seconds)
    return {**rates, **{f"{name} tok/s": v for name, v in token_rates.items()}}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="an OpenAI-compatible server to use instead of the local model")
    parser.add_argument("--k", type=int, default=5, help="samples per vote (default 5)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per sample (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three ways (default 3)")
    args = parser.parse_args()
    local: LocalModel | None = None
    if args.url:
        client = OpenAICompatible(args.url, extra_body={"ignore_eos": True}, max_concurrency=args.k)
    else:
        local = LocalModel(client_options={"extra_body": {"ignore_eos": True}, "max_concurrency": args.k})
        t0 = time.perf_counter()
        await local.start()
        server = local.server
        assert server.pid is not None
        print(f"server startup: {server.startup_s:.1f} s to /health ({time.perf_counter() - t0:.1f} s in all)")
        print(f"server RSS: {tree_rss_gib(server.pid):.2f} GiB (server + workers)")
        client = local.client
    try:
        results = await measure(client, args.k, args.tokens, args.rounds)
    finally:
        if local is not None:
            await local.stop()
    base = statistics.median(results["(a) one by one"])
    print(f"\nk={args.k} samples of {args.tokens} tokens, median of {args.rounds} rounds:")
    for name, values in results.items():
        if name.endswith("tok/s"):
            continue
        rate = statistics.median(values)
        tok = statistics.median(results[f"{name} tok/s"])
        print(f"  {name:<26} {rate:7.2f} samples/s  {tok:7.1f} tokens/s  {rate / base:5.2f}x (a)")


if __name__ == "__main__":
    asyncio.run(main())
