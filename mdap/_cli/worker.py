"""``mdap worker``: a long-lived Redis pool worker for one role. SIGTERM/SIGINT drain and exit 0."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
from contextlib import AsyncExitStack

from mdap._cli._args import finite_float, nonneg_int, pipeline_target, positive_float, positive_int, probability
from mdap.errors import ConfigError

from ._sandbox import add_sandbox_flag, use_sandbox

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``worker`` subcommand."""
    p = sub.add_parser(
        "worker",
        help="run a Redis pool worker (long-lived; SIGTERM drains)",
        description="Serve one role of a Redis worker pool: take steps from <prefix>:steps:<role>, sample and "
        "vote on this worker's model, store each result. SIGTERM/SIGINT finish the steps in flight and exit 0; "
        "SIGUSR1 logs what each task is waiting on.",
    )
    p.add_argument("--redis", required=True, metavar="URL", help="redis://[:password@]host:port/db or rediss://")
    p.add_argument("--role", required=True, help="the role (stream) to serve, e.g. hanoi")
    p.add_argument("--model", default="simulated", help="simulated | local | http(s)://server/v1 (default simulated)")
    p.add_argument("--concurrency", type=positive_int, default=1, help="steps run at once (default 1)")
    p.add_argument("--error-rate", type=probability, default=0.0, help="simulated: per-sample error rate")
    p.add_argument("--red-flag-rate", type=probability, default=0.0, help="simulated: malformed/over-long sample rate")
    p.add_argument("--correlation", type=probability, default=0.0, help="simulated: how often wrong samples agree")
    p.add_argument("--latency", type=finite_float(0.0, 3600.0), default=0.0, help="simulated: seconds per request")
    p.add_argument("--seed", type=nonneg_int, default=None, help="simulated: seed (default: from the worker's pid)")
    p.add_argument("--prefix", default="mdap", help="key prefix of the pool (default mdap)")
    p.add_argument(
        "--claim-idle", type=positive_float, default=30.0, help="seconds before a dead worker's step is reclaimed"
    )
    p.add_argument("--heartbeat", type=positive_float, default=2.0, help="seconds between heartbeats")
    p.add_argument("--max-attempts", type=positive_int, default=3, help="tries per step before the dead-letter stream")
    p.add_argument("--result-ttl", type=positive_int, default=3600, help="seconds results are kept")
    p.add_argument("--pipeline", type=pipeline_target, default=None, metavar="TARGET",
                   help="serve the subtasks of this pipeline: a roles file (.json/.toml/.yaml) or pipeline.py:factory"
                   " (its roles use --model; `mdap run ... --pool URL` sends them)")  # fmt: skip
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (it may register more step kinds in mdap.pool.KINDS)")  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true", help="log every reclaim and retry")
    add_sandbox_flag(p)
    p.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    import os

    from mdap.evals.hanoi import register_pool_kinds
    from mdap.models import SIMULATED, open_model
    from mdap.pool import KINDS, PoolWorker, PoolWorkerConfig, SimulatedSettings, StepHandler

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s mdap %(name)s: %(message)s",
    )
    logging.getLogger("mdap.worker").setLevel(logging.INFO)
    register_pool_kinds(KINDS)
    for module in args.imports:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"--import {module}: {err}") from None
    config = PoolWorkerConfig(
        role=args.role,
        concurrency=args.concurrency,
        prefix=args.prefix,
        claim_idle_s=args.claim_idle,
        heartbeat_s=args.heartbeat,
        max_attempts=args.max_attempts,
        result_ttl_s=args.result_ttl,
    )

    async def serve() -> None:
        async with AsyncExitStack() as stack:
            if args.pipeline is not None:
                await _register_pipeline(args.pipeline, args.model, stack, args)
            if args.model == SIMULATED:  # each step kind builds its task's simulated model
                settings = SimulatedSettings(
                    error_rate=_rate("--error-rate", args.error_rate),
                    red_flag_rate=_rate("--red-flag-rate", args.red_flag_rate),
                    correlation=_rate("--correlation", args.correlation),
                    latency_s=args.latency,
                    seed=args.seed if args.seed is not None else os.getpid(),
                )
                handler = StepHandler(KINDS, simulated=settings)
            else:
                handler = StepHandler(KINDS, await stack.enter_async_context(open_model(args.model)))
            worker = PoolWorker(args.redis, handler, config)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, worker.stop)
            loop.add_signal_handler(signal.SIGUSR1, worker.log_tasks)
            await worker.run()

    asyncio.run(serve())
    return 0


async def _register_pipeline(target: str, model_spec: str, stack: AsyncExitStack, args: argparse.Namespace) -> None:
    """Build the pipeline ``mdap run`` builds from ``target`` and let this worker run its subtasks."""
    from pathlib import Path

    from mdap._cli.run import dry_run_model, load_factory
    from mdap.agents import Pipeline
    from mdap.agents.pool_runner import register_pipeline_kind
    from mdap.models import SimulatedModel, open_model

    model = await stack.enter_async_context(open_model(model_spec, simulated=lambda: SimulatedModel(dry_run_model)))
    file, _, name = target.rpartition(":")
    if target.endswith(".py") or not (file.endswith(".py") and name.isidentifier()):
        from mdap.agents.config import load_config

        path = Path(target)
        pipeline = load_config(path).build(model, base=path.parent)
    else:
        pipeline = load_factory(file, name, model)
    if not isinstance(pipeline, Pipeline):
        raise ConfigError(f"--pipeline {target} gave {type(pipeline).__name__}, not a mdap Pipeline")
    use_sandbox(args, check=any(role.tools for role in pipeline.roles))
    register_pipeline_kind(pipeline)


def _rate(flag: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{flag} must be between 0 and 1, got {value}")
    return value
