"""What the sandbox costs per tool call: ``python_tool`` running ``print(1)`` in bubblewrap vs ``Sandbox.none()``.

Calls alternate between the two (so machine noise hits both alike); prints the median of each and the ratio.

    python benchmarks/sandbox_overhead.py            # 50 calls each
    python benchmarks/sandbox_overhead.py --calls 200
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time

from mdap.agents import Sandbox, Workspace, python_tool, shell_tool


async def measure(calls: int) -> dict[str, list[float]]:
    """Seconds per call of each tool in each sandbox, interleaved."""
    logging.getLogger("mdap.sandbox").setLevel(logging.ERROR)  # the opt-out's warning is expected here
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(tmp)
        boxes = {"bubblewrap": Sandbox(), "none": Sandbox.none()}
        tools = {
            f"{kind} {name}": tool
            for name, box in boxes.items()
            for kind, tool in (("python", python_tool(ws, sandbox=box)), ("shell", shell_tool(ws, sandbox=box)))
        }
        args = {"python": {"code": "print(1)"}, "shell": {"command": "echo 1"}}
        for label, tool in tools.items():  # warm up: the sandbox's availability check, the page cache
            await tool.call(args[label.split()[0]])
        times: dict[str, list[float]] = {label: [] for label in tools}
        for _ in range(calls):
            for label, tool in tools.items():
                t0 = time.perf_counter()
                out = await tool.call(args[label.split()[0]])
                times[label].append(time.perf_counter() - t0)
                if "1" not in out:
                    raise SystemExit(f"{label}: unexpected output {out!r}")
    return times


def main() -> None:
    """Measure and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=50, help="calls of each tool in each sandbox (default 50)")
    calls = ap.parse_args().calls
    times = asyncio.run(measure(calls))
    med = {label: statistics.median(ts) * 1000 for label, ts in times.items()}
    print(f"median of {calls} calls, interleaved")
    print(f"{'tool':<8} {'bubblewrap ms':>14} {'none ms':>9} {'ratio':>7} {'added ms':>9}")
    for kind in ("python", "shell"):
        boxed, bare = med[f"{kind} bubblewrap"], med[f"{kind} none"]
        print(f"{kind:<8} {boxed:>14.1f} {bare:>9.1f} {boxed / bare:>6.2f}x {boxed - bare:>9.1f}")


if __name__ == "__main__":
    main()
