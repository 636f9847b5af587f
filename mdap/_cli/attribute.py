"""``mdap attribute CONFIG``: Shapley attribution of a pipeline's benchmark score to its module slots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mdap._cli._args import input_file, positive_int

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``attribute`` subcommand."""
    p = sub.add_parser(
        "attribute",
        help="which module slot earned the score (Shapley attribution)",
        description=(
            "Score every coalition of module slots (test variants in, defaults out) on the config's benchmark, "
            "then print Shapley and Banzhaf values with confidence intervals and pairwise interactions. Scores "
            "are cached in the output directory: an interrupted attribution resumes where it stopped."
        ),
    )
    p.add_argument("config", type=input_file(), help="attribution config (.json or .toml)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: the config's, else .mdap/...)")
    p.add_argument("--parallel", type=positive_int, default=None, help="units scored at once (default: the config's)")
    p.add_argument("--fresh", action="store_true", help="delete the score cache first and score everything again")
    p.add_argument("--no-plot", action="store_true", help="skip the bar chart (no matplotlib needed)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=_attribute)


def _attribute(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mdap.evals.attribution import run_config

    bar: tqdm | None = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            bar = tqdm(total=total, desc="coalitions x seeds", unit="unit", file=sys.stderr, leave=False)
        bar.total = total
        bar.update(done - bar.n)

    try:
        report, paths = run_config(
            args.config,
            output=args.out,
            parallel=args.parallel,
            fresh=args.fresh,
            plot=not args.no_plot,
            progress=progress,
        )
    except KeyboardInterrupt:
        print("mdap: interrupted; run the same command again to resume from the score cache", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    print(report.table())
    for kind, path in paths.items():
        print(f"{kind:<7} {path}")
    return 0
