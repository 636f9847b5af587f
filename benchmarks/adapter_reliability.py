"""What voting needs, before and after training a Hanoi worker adapter (issue 7's measurement).

Steps (each is also a CLI command; this script only chains them and prints one table):
  1. ``mdap adapters dataset --disks 3..8 --heldout 50``: teacher trajectories in three peg labellings, 50 states
     held out;
  2. ``mdap adapters train``: LoRA (r=16, every projection, answer-only loss) for ``--steps`` steps; then
     ``--hard-rounds`` rounds of ``--hard-steps`` steps, each on data weighted by exact mining of every training
     state (``--mine-first --mine exact``); skipped with ``--adapter-dir`` (evaluate an existing adapter);
  3. ``mdap adapters eval``: base, adapter, adapter with decorrelated sampling -- 20 samples at temperature 0.7
     per held-out state through the local vLLM server: mean p, fraction of states with p > 0.5, min p,
     collision rate, k_min and expected samples per step for 6 disks (63 steps).

Training takes minutes per step on a busy 2-core CPU: run it under ``nice -n 19`` and give it the time it needs.

    nice -n 19 python benchmarks/adapter_reliability.py --work /tmp/adapter-bench --steps 250 --hard-rounds 2
    nice -n 19 python benchmarks/adapter_reliability.py --work /tmp/adapter-bench --adapter-dir DIR  # eval only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def mdap(*args: str) -> None:
    """Run one mdap command, echoing it."""
    print("$ mdap " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "mdap.cli", *args], check=True)


def main() -> int:
    """Build the data, train (unless given an adapter), evaluate, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/mdap-adapter-bench"), help="working directory")
    ap.add_argument("--steps", type=int, default=250, help="training steps per round")
    ap.add_argument("--hard-rounds", type=int, default=0, help="hard-example rounds after the first training")
    ap.add_argument("--hard-steps", type=int, default=100, help="training steps per hard-example round")
    ap.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    ap.add_argument("--adapter-dir", type=Path, default=None, help="evaluate this adapter instead of training")
    ap.add_argument("--samples", type=int, default=20, help="samples per held-out state")
    ap.add_argument("--states", type=int, default=50, help="held-out states evaluated")
    args = ap.parse_args()

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data.jsonl"
    if not data.exists():
        mdap("adapters", "dataset", "--disks", "3..8", "--heldout", "50", "--out", str(data))
    adapter = args.adapter_dir or work / "hanoi"
    t0 = time.perf_counter()
    if args.adapter_dir is None:
        first = work / "hanoi-round-1" if args.hard_rounds else adapter
        mdap("adapters", "train", "--base", "local", "--data", str(data), "--out", str(first), "--role", "hanoi",
             "--steps", str(args.steps), "--lr", str(args.lr), "--threads", "2")  # fmt: skip
        if args.hard_rounds:
            mdap("adapters", "train", "--base", "local", "--data", str(data), "--out", str(adapter), "--role", "hanoi",
                 "--init-adapter", str(first), "--mine-first", "--mine", "exact", "--mine-states", "100000",
                 "--rounds", str(args.hard_rounds), "--steps", str(args.hard_steps), "--lr", str(args.lr),
                 "--threads", "2")  # fmt: skip
    train_s = time.perf_counter() - t0
    report = work / "eval.json"
    heldout = work / "data.heldout.jsonl"
    mdap("adapters", "eval", "--adapter", "hanoi", "--path", str(adapter), "--data", str(heldout), "--decorrelate",
         "--samples", str(args.samples), "--states", str(args.states), "--report", str(report))  # fmt: skip
    print(f"\ntraining: {train_s / 60:.1f} min wall" if args.adapter_dir is None else "")
    for r in json.loads(report.read_text()):
        below = [s["id"] for s in r["per_state"] if (s["p"] or 0) <= 0.5]
        print(f"{r['model']}{' +decorrelated' if r['decorrelated'] else ''}: states at p <= 0.5: {len(below)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
