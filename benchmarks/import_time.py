"""How long `import mdap` takes, against `import pydantic` (its heaviest required import) measured alongside.

    python benchmarks/import_time.py [--runs 7]

Each figure is the median over fresh interpreters of the cumulative time `python -X importtime` reports.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys


def cumulative_us(module: str) -> int:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True)
    for line in out.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1])
    raise RuntimeError(f"no importtime line for {module}: {out.stderr[-500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    mdap = statistics.median(cumulative_us("mdap") for _ in range(args.runs))
    base = statistics.median(cumulative_us("pydantic") for _ in range(args.runs))
    print(f"import mdap      {mdap / 1000:8.1f} ms")
    print(f"import pydantic  {base / 1000:8.1f} ms")
    print(f"ratio mdap/pydantic {mdap / base:.2f}")


if __name__ == "__main__":
    main()
