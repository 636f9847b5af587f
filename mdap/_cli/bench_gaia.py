"""``mdap bench gaia``: run GAIA questions through the default pipeline and score them by the official rules."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from mdap._cli._args import id_list, input_dir, nonneg_float, nonneg_int, positive_int, probability
from mdap._cli._otel import add_otlp_flag, otlp_exporter
from mdap._cli._price import add_price_flags, price_of
from mdap._cli._sandbox import add_sandbox_flag, use_sandbox
from mdap._outputs import check_output_dir, guard_outputs
from mdap.errors import MdapError, OutputError
from mdap.usage import format_cost

__all__ = ["add_parser"]

# `--model local` defaults: the embedded 135M model on a CPU makes ~10-40 tokens/s and seldom keeps to the
# `FINAL ANSWER:` format, so long replies and big vote caps mostly cost minutes per question.
LOCAL_MAX_TOKENS = 256
LOCAL_MAX_SAMPLES = 4


def add_parser(suites: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``gaia`` suite to ``mdap bench``."""
    p = suites.add_parser(
        "gaia",
        help="GAIA: questions with attachments, official scoring, leaderboard JSONL",
        description="Run GAIA questions (official layout DIR/2023/<split>/metadata.jsonl or .parquet) through the "
        "default planner + worker pipeline, score them by the official rules, and write submission.jsonl "
        "(task_id, model_answer, reasoning_trace), results.jsonl and summary.json. A resumed run skips the "
        "questions already recorded.",
    )
    p.add_argument(
        "--data",
        type=input_dir(keep=("mini",)),
        required=True,
        help="the GAIA folder that holds 2023/ (mdap never downloads it); 'mini' = the offline suite shipped with mdap",
    )
    p.add_argument("--split", default="validation", help="split folder under 2023/ (default validation)")
    p.add_argument("--level", type=int, action="append", choices=(1, 2, 3), help="only this level (repeatable)")
    p.add_argument("--ids", type=id_list("task ids"), default=None, help="only these task ids (comma-separated)")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N questions after the filters")
    p.add_argument(
        "--model",
        default="simulated",
        help="simulated (a dry run: an oracle that knows --known of the answers) | local | local:PATH | "
        "http(s)://server/v1",
    )
    p.add_argument("--model-name", default=None, help="the served model name (URL backends)")
    p.add_argument("--adapter", default=None, help="LoRA adapter name the samples come from")
    add_price_flags(p)
    p.add_argument(
        "--known", type=probability, default=1.0, help="simulated: fraction of the answers it knows (default 1)"
    )
    p.add_argument("--error-rate", type=probability, default=0.0, help="simulated: per-sample error rate")
    p.add_argument("--seed", type=nonneg_int, default=0, help="simulated: seed of the known subset and the errors")
    p.add_argument("--planner", choices=("llm", "fixed"), default="llm", help="llm (default) or fixed one-step plan")
    p.add_argument("--k", type=positive_int, default=2, help="vote margin of the final answer (default 2)")
    p.add_argument(
        "--max-samples",
        type=positive_int,
        default=None,
        help=f"sample cap of the final-answer vote (default 8; {LOCAL_MAX_SAMPLES} if local)",
    )
    p.add_argument(
        "--temperature", type=nonneg_float, default=0.7, help="sampling temperature after a vote's first sample"
    )
    p.add_argument(
        "--max-tokens",
        type=positive_int,
        default=None,
        help=f"completion token limit per sample (default 1024; {LOCAL_MAX_TOKENS} if local)",
    )
    p.add_argument("--max-tool-rounds", type=nonneg_int, default=4, help="tool rounds per solver step")
    p.add_argument(
        "--solver-actions",
        choices=["code", "tools"],
        default="code",
        help="how the solver acts: code (python blocks, default) or tools (tool calls, native where served)",
    )
    p.add_argument("--concurrency", type=positive_int, default=2, help="questions run at once (default 2)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default .mdap/gaia-<split>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished task ids")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_sandbox_flag(p)
    add_otlp_flag(p)
    p.set_defaults(handler=_gaia)


def _gaia(args: argparse.Namespace) -> int:
    from mdap.evals.gaia import MINI_DATA, GaiaConfig, format_table, run_gaia

    local = args.model == "local"
    data = MINI_DATA if args.data == "mini" and not Path(args.data).exists() else Path(args.data)
    cfg = GaiaConfig.build(
        data=data,
        split=args.split,
        levels=args.level,
        ids=args.ids,
        limit=args.limit,
        model=args.model,
        model_name=args.model_name,
        adapter=args.adapter,
        price=price_of(args),
        known=args.known,
        error_rate=args.error_rate,
        seed=args.seed,
        planner=args.planner,
        k=args.k,
        max_samples=(LOCAL_MAX_SAMPLES if local else 8) if args.max_samples is None else args.max_samples,
        temperature=args.temperature,
        max_tokens=(LOCAL_MAX_TOKENS if local else 1024) if args.max_tokens is None else args.max_tokens,
        max_tool_rounds=args.max_tool_rounds,
        solver_actions=args.solver_actions,
        concurrency=args.concurrency,
        out=args.out,
        resume=args.resume,
        progress=not args.no_progress,
    )
    check_output_dir(cfg.out_dir, "--out")
    sandbox = use_sandbox(args)
    try:
        with guard_outputs(cfg.out_dir), otlp_exporter(args) as provider:
            summary = asyncio.run(run_gaia(cfg, sandbox=sandbox, tracer_provider=provider))
    except OutputError:  # a full disk: the scores recorded so far still go to stdout, then the error
        _print_recorded(cfg)
        raise
    print(format_table(summary))
    print(
        f"skipped {summary.skipped} finished, {len(summary.errors)} errors, {summary.usage.samples:,} samples, "
        f"cost {format_cost(summary.usage.cost)}, {summary.wall_seconds:,.1f} s"
    )
    print(f"wrote {cfg.out_dir}/submission.jsonl, results.jsonl, summary.json")
    for task_id, error in summary.errors.items():
        print(f"error {task_id}: {error[:300]} (run again with --resume to retry it)")
    return 1 if summary.errors else 0


def _print_recorded(cfg: Any) -> None:
    from mdap.evals.gaia import RESULTS_FILE, format_table, read_results, summarize

    try:
        done = read_results(cfg.out_dir / RESULTS_FILE)
    except (MdapError, OSError):
        return
    if done:
        print(f"recorded in {cfg.out_dir / RESULTS_FILE} so far:")
        print(format_table(summarize(done, split=cfg.split, model=cfg.model)))
