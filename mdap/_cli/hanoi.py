"""``mdap hanoi``: solve Towers of Hanoi by voting (MAKER replication)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from mdap._cli._args import finite_float, k_or_auto, nonneg_float, nonneg_int, positive_int, probability
from mdap._cli._otel import add_otlp_flag, otlp_exporter
from mdap._cli._price import add_price_flags, price_of
from mdap._outputs import check_output_dir, check_output_file, guard_outputs
from mdap.errors import OutputError
from mdap.usage import format_cost

__all__ = ["add_parser"]

# `--model local` defaults. The embedded 135M model on a CPU makes ~10-40 tokens/s and mostly fails the strict
# two-line answer format; any sample past the two lines (~40 tokens at 3 disks) is a red flag anyway. MAKER's
# 750-token limit and 100-sample cap would keep one undecidable step going for half an hour.
LOCAL_MAX_TOKENS = 96
LOCAL_MAX_SAMPLES = 30

LATENCY = finite_float(0.0, 3600.0)
"""Simulated seconds per request: at most an hour."""
TARGET = finite_float(0.0, 1.0, low_open=True, high_open=True)
"""A whole-run success probability: strictly between 0 and 1."""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``hanoi`` subcommand."""
    p = sub.add_parser(
        "hanoi",
        help="solve Towers of Hanoi by voting (MAKER replication)",
        description="Solve N-disk Towers of Hanoi one voted move at a time, verifying every move.",
    )
    p.add_argument("--disks", type=positive_int, default=20, help="number of disks (2^N - 1 moves; default 20)")
    p.add_argument(
        "--model", default="simulated", help="simulated | local | local:PATH | http(s)://server/v1 (default simulated)"
    )
    p.add_argument("--adapter", default=None, help="LoRA adapter name the worker samples from")
    add_price_flags(p)
    p.add_argument("--error-rate", type=probability, default=0.002, help="simulated: per-sample error rate")
    p.add_argument("--red-flag-rate", type=probability, default=0.0, help="simulated: malformed/over-long sample rate")
    p.add_argument("--correlation", type=probability, default=0.0, help="simulated: how often wrong samples agree")
    p.add_argument("--latency", type=LATENCY, default=0.0, help="simulated: seconds per request")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the simulated model")
    p.add_argument("--k", type=k_or_auto, default=3, help="vote margin, or 'auto' to calibrate it (default 3)")
    p.add_argument("--target", type=TARGET, default=0.95, help="k=auto: whole-run success target")
    p.add_argument(
        "--calibration-steps", type=positive_int, default=100, help="k=auto: steps sampled to estimate p (default 100)"
    )
    p.add_argument(
        "--calibration-samples", type=positive_int, default=10, help="k=auto: samples per calibration step (default 10)"
    )
    p.add_argument("--temperature", type=nonneg_float, default=0.1, help="sampling temperature (default 0.1)")
    p.add_argument(
        "--first-temperature", type=nonneg_float, default=None, help="temperature of each step's first sample"
    )
    p.add_argument(
        "--preset",
        choices=("maker",),
        default=None,
        help="maker: MAKER's voter -- each step's first sample greedy (temperature 0), the rest at 0.1, samples "
        "over 750 tokens red-flagged (the server is asked for no more); flags given explicitly win",
    )
    p.add_argument(
        "--runs",
        type=positive_int,
        default=1,
        help="independent runs at once through one model client, one combined report (default 1)",
    )
    p.add_argument(
        "--max-samples",
        type=positive_int,
        default=None,
        help=f"sample cap per step (default 100; {LOCAL_MAX_SAMPLES} if local)",
    )
    p.add_argument(
        "--max-tokens",
        type=positive_int,
        default=None,
        help=f"completion token limit, longer = red flag (default 750; {LOCAL_MAX_TOKENS} if local)",
    )
    p.add_argument("--run-dir", type=Path, default=None, help="checkpoint directory (default .mdap/hanoi-N)")
    p.add_argument("--trace", type=Path, default=None, help="write a JSONL trace of every decided step")
    p.add_argument("--resume", action="store_true", help="continue the run checkpointed in the run directory")
    p.add_argument("--checkpoint-every", type=positive_int, default=10_000, help="steps between checkpoints")
    p.add_argument("--report", type=Path, default=None, help="write the run report as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--decorrelate", action="store_true", help="spread each step's samples over peg rotations")
    p.add_argument(
        "--pool",
        default=None,
        metavar="URL",
        help="decide steps on a Redis worker pool (redis://host:port, rediss:// for TLS; role 'hanoi')",
    )
    add_otlp_flag(p)
    p.set_defaults(handler=_hanoi)


def _hanoi(args: argparse.Namespace) -> int:
    from mdap.evals.hanoi import HanoiConfig, run_hanoi
    from mdap.executor import run_path

    local = args.model == "local"
    maker = args.preset == "maker"
    cfg = HanoiConfig.build(
        disks=args.disks,
        model=args.model,
        adapter=args.adapter,
        price=price_of(args),
        error_rate=args.error_rate,
        red_flag_rate=args.red_flag_rate,
        correlation=args.correlation,
        latency=args.latency,
        seed=args.seed,
        k=args.k,
        target=args.target,
        calibration_steps=args.calibration_steps,
        calibration_samples=args.calibration_samples,
        temperature=args.temperature,
        first_temperature=args.first_temperature,
        max_samples=(LOCAL_MAX_SAMPLES if local else 100) if args.max_samples is None else args.max_samples,
        max_tokens=(LOCAL_MAX_TOKENS if local and not maker else 750) if args.max_tokens is None else args.max_tokens,
        run_dir=args.run_dir,
        trace=args.trace,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress,
        pool=args.pool,
        decorrelate=args.decorrelate,
        runs=args.runs,
        preset=args.preset,
    )
    if args.report is not None:
        check_output_file(args.report, "--report")
    if args.trace is not None:
        for trace in [args.trace] if args.runs == 1 else [run_path(args.trace, i) for i in range(args.runs)]:
            check_output_file(trace, "--trace", make_parents=True)
    check_output_dir(cfg.checkpoint_path.parent, "--run-dir")
    with guard_outputs(cfg.checkpoint_path, args.trace), otlp_exporter(args) as provider:
        if provider is None:
            report = asyncio.run(run_hanoi(cfg))
        else:
            from mdap.agents.telemetry import trace_chain

            with trace_chain(f"hanoi {args.disks}", provider, model=args.model, disks=args.disks, k=str(args.k)):
                report = asyncio.run(run_hanoi(cfg))
    data = report.summary_dict()
    keys = (
        "task", "steps", "total_steps", "verifier_errors", "samples", "mean_samples_per_step",
        "expected_samples_per_step", "red_flags", "cost", "k", "wall_seconds", "steps_per_second", "failure",
    )  # fmt: skip
    width = max(map(len, keys))
    if args.runs > 1:
        print(f"{'runs':<{width}}  {args.runs}")
    for key in keys:
        value = data[key]
        if key == "cost":
            shown = format_cost(value)
        elif isinstance(value, float):
            shown = f"{value:,.3f}"
        else:
            shown = json.dumps(value) if isinstance(value, dict) else value
        print(f"{key:<{width}}  {shown}")
    for warning in (report.calibration or {}).get("warnings", []):
        print(f"mdap: warning: calibration: {warning}", file=sys.stderr)
    if args.report is not None:  # after the summary is out: a report that cannot be written does not lose it
        try:
            report.write(args.report)
        except OutputError as err:
            print(f"mdap: error: the run finished but its report was not written: {err}", file=sys.stderr)
            return 1
    return 0 if report.ok else 1
