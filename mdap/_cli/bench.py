"""``mdap bench SUITE ...``: run a benchmark suite. Each suite is a module with ``add_parser(sub)``."""

from __future__ import annotations

import argparse
import importlib

__all__ = ["add_parser"]

# One line per suite module (mdap/_cli/bench_<suite>.py); the order is the order of `mdap bench --help`.
_SUITES: tuple[str, ...] = ("mdap._cli.bench_gaia", "mdap._cli.bench_swebench")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``bench`` subcommand and its suites."""
    p = sub.add_parser("bench", help="run a benchmark suite (GAIA, SWE-bench)", description=__doc__)
    suites = p.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for name in _SUITES:
        importlib.import_module(name).add_parser(suites)
