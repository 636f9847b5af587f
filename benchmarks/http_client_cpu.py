"""Client CPU per chat-completion request, by HTTP stack, against ``mdap serve --simulated`` (its own process).

Each stack sends ``--requests`` sequential requests (one Hanoi prompt, n=2 at temperature 0.1, as a MAKER step's
batched request) and the client's CPU time (``time.process_time``, so the server's CPU is not counted) is
measured around each one; the median and the mean are printed. Stacks:

  * mdap: ``OpenAICompatible.sample`` (what the voter calls: request, parse, Sample objects);
  * openai-sdk: ``AsyncOpenAI.chat.completions.create`` (the openai package's typed path);
  * openai-raw: ``AsyncOpenAI.chat.completions.with_raw_response.create`` + ``json.loads`` of the body;
  * httpx: ``httpx.AsyncClient.post`` + ``json.loads``;
  * aiohttp: ``aiohttp.ClientSession.post`` + ``json.loads`` (pip install aiohttp if it is missing).

    python benchmarks/http_client_cpu.py                 # 1,000 requests per stack
    python benchmarks/http_client_cpu.py --requests 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from http_overhead import serve_simulated  # the sibling script: this folder is on sys.path when run

from mdap.evals.hanoi import HanoiStep
from mdap.models import OpenAICompatible

Send = Callable[[], Awaitable[Any]]


async def cpu_per_request(send: Send, requests: int) -> list[float]:
    """Client CPU seconds of each of ``requests`` sequential sends (after 50 warm-up sends)."""
    for _ in range(50):
        await send()
    out = []
    for _ in range(requests):
        c0 = time.process_time()
        await send()
        out.append(time.process_time() - c0)
    return out


async def stacks(url: str, requests: int) -> dict[str, list[float]]:
    ms = HanoiStep(10)
    messages = ms.render(ms.initial())
    body = {"model": "simulated", "messages": messages, "n": 2, "temperature": 0.1, "max_tokens": 750}
    out: dict[str, list[float]] = {}

    model = OpenAICompatible(url, "simulated")
    out["mdap"] = await cpu_per_request(lambda: model.sample(messages, n=2, temperature=0.1, max_tokens=750), requests)
    await model.aclose()

    from openai import AsyncOpenAI

    sdk = AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0)
    out["openai-sdk"] = await cpu_per_request(lambda: sdk.chat.completions.create(**body), requests)

    async def raw() -> Any:
        response = await sdk.chat.completions.with_raw_response.create(**body)
        return json.loads(response.content)

    out["openai-raw"] = await cpu_per_request(raw, requests)
    await sdk.close()

    import httpx

    async with httpx.AsyncClient(base_url=url) as client:

        async def post_httpx() -> Any:
            response = await client.post("/chat/completions", content=json.dumps(body))
            return json.loads(response.content)

        out["httpx"] = await cpu_per_request(post_httpx, requests)

    try:
        import aiohttp
    except ImportError:
        print("aiohttp is not installed (pip install aiohttp): its row is skipped", file=sys.stderr)
        return out
    async with aiohttp.ClientSession() as session:

        async def post_aiohttp() -> Any:
            async with session.post(f"{url}/chat/completions", data=json.dumps(body)) as response:
                return json.loads(await response.read())

        out["aiohttp"] = await cpu_per_request(post_aiohttp, requests)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per stack (default 1000)")
    args = parser.parse_args()
    proc, url = serve_simulated()
    try:
        results = asyncio.run(stacks(url, args.requests))
    finally:
        proc.terminate()
        proc.wait(10)
    base = statistics.median(results["aiohttp"]) if "aiohttp" in results else None
    print(f"client CPU per request, {args.requests} sequential requests (n=2) to mdap serve --simulated")
    print(f"{'stack':<12} {'median ms':>10} {'mean ms':>9} {'vs aiohttp':>11}")
    for name, cpu in results.items():
        med = statistics.median(cpu)
        ratio = f"{med / base:>10.2f}x" if base else "-"
        print(f"{name:<12} {med * 1000:>10.3f} {statistics.fmean(cpu) * 1000:>9.3f} {ratio:>11}")


if __name__ == "__main__":
    main()
