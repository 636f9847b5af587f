"""Hanoi at scale: the executor vs. a bare loop that does only the unavoidable work per sample.

For each size it runs, in a fresh process each (so peak RSS is the run's own):
  * mdap: ``run_hanoi`` -- executor, first-to-ahead-by-k voter, red flags, verifier, checkpoints;
  * bare: render the prompt, produce the simulated text (same oracle, same error model), parse it; no voting,
    no verification, no checkpoints.
It prints steps/s, samples/s, mean samples per step vs. theory, peak RSS, and the time ratio mdap / bare.

    python benchmarks/hanoi_scale.py                 # disks 10 14 17 20
    python benchmarks/hanoi_scale.py --disks 10 14   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_mdap(disks: int, error_rate: float, k: int) -> dict[str, float]:
    from mdap.evals.hanoi import HanoiConfig, run_hanoi

    with tempfile.TemporaryDirectory() as tmp:
        cfg = HanoiConfig.build(disks=disks, error_rate=error_rate, k=k, run_dir=Path(tmp))
        t0 = time.perf_counter()
        report = asyncio.run(run_hanoi(cfg))
        wall = time.perf_counter() - t0
    assert report.ok, report.failure or report.error_messages
    return {
        "wall": wall,
        "steps": report.steps,
        "samples": report.usage.samples,
        "errors": report.verifier_errors or 0,
        "expected": report.expected_samples_per_step or 0.0,
    }


def run_bare(disks: int, error_rate: float, k: int) -> dict[str, float]:
    """The unavoidable work: per step render once, then k samples each produced and parsed."""
    from mdap.evals.hanoi import HanoiStep, hanoi_oracle, hanoi_wrong_answer

    ms = HanoiStep(disks)
    rng = random.Random(0)
    state = ms.initial()
    samples = 0
    t0 = time.perf_counter()
    for _ in range(ms.steps):
        messages = ms.render(state)
        correct = hanoi_oracle(messages)
        answer = None
        for _ in range(k):
            text = hanoi_wrong_answer(messages, correct, rng) if rng.random() < error_rate else correct
            parsed = ms.parse(text)
            if text is correct:
                answer = parsed
        samples += k
        state = ms.apply(state, answer if answer is not None else ms.parse(correct))
    return {"wall": time.perf_counter() - t0, "steps": ms.steps, "samples": samples}


def one(kind: str, disks: int, error_rate: float, k: int) -> None:
    result = (run_mdap if kind == "mdap" else run_bare)(disks, error_rate, k)
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(kind: str, disks: int, error_rate: float, k: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--one", kind, "--disks", str(disks), "--error-rate", str(error_rate)]
    out = subprocess.run([*cmd, "--k", str(k)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--disks", type=int, nargs="+", default=[10, 14, 17, 20])
    parser.add_argument("--error-rate", type=float, default=0.002)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--one", choices=["mdap", "bare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one, args.disks[0], args.error_rate, args.k)
        return
    print(f"Hanoi, simulated model, per-sample error {args.error_rate}, k={args.k}")
    head = (
        f"{'disks':>5} {'steps':>9} {'wall s':>8} {'steps/s':>9} {'samples/s':>10} {'samples/step':>12} "
        f"{'theory':>7} {'errors':>6} {'RSS MB':>7} {'bare s':>7} {'bare RSS':>8} {'mdap/bare':>9}"
    )
    print(head)
    for disks in args.disks:
        m = measure("mdap", disks, args.error_rate, args.k)
        b = measure("bare", disks, args.error_rate, args.k)
        print(
            f"{disks:>5} {m['steps']:>9,.0f} {m['wall']:>8.2f} {m['steps'] / m['wall']:>9,.0f} "
            f"{m['samples'] / m['wall']:>10,.0f} {m['samples'] / m['steps']:>12.4f} {m['expected']:>7.4f} "
            f"{m['errors']:>6.0f} {m['rss_mb']:>7.1f} {b['wall']:>7.2f} {b['rss_mb']:>8.1f} "
            f"{m['wall'] / b['wall']:>9.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
