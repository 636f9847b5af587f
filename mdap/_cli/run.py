"""``mdap run``: run a pipeline on a task — from a config file (``--roles``) or from Python (``file.py:factory``)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import json
import re
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from mdap._cli._args import checkpoint_file, input_file, positive_int
from mdap._cli._otel import add_otlp_flag, add_trace_detail_flag, otlp_exporter
from mdap._cli._price import add_price_flags, price_of
from mdap._outputs import RERUN, check_output_file, guard_outputs, write_atomic
from mdap.errors import ConfigError, OutputError
from mdap.types import Message
from mdap.usage import format_cost

from ._sandbox import add_sandbox_flag, use_sandbox

__all__ = ["add_parser", "dry_run_model", "load_factory"]

_FACTORY = re.compile(r"^(?P<file>.+\.py):(?P<name>[A-Za-z_]\w*)$")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``run`` subcommand."""
    p = sub.add_parser(
        "run",
        help="run a pipeline (planner -> coordinator -> workers) on a task",
        description='Run a pipeline on a task. Either `mdap run "task text" --roles roles.json` (a pipeline '
        'defined in a JSON/TOML/YAML file) or `mdap run pipeline.py:factory "task text"` (a function returning '
        "a Pipeline). --model simulated is a dry run with a built-in scripted model.",
    )
    p.add_argument("target", help="the task text, or path/to/pipeline.py:factory")
    p.add_argument("task", nargs="?", default=None, help="the task text, after a pipeline.py:factory target")
    p.add_argument("--roles", type=input_file(), default=None, help="pipeline config file (.json, .toml, .yaml)")
    p.add_argument(
        "--model", default=None, help="simulated | local | local:PATH | http(s)://server/v1 (default simulated)"
    )
    p.add_argument("--model-name", default=None, help="served model name (URL backends)")
    add_price_flags(p)
    p.add_argument(
        "--checkpoint",
        type=checkpoint_file,
        default=None,
        help="SQLite checkpoint file (default .mdap/pipelines.sqlite)",
    )
    p.add_argument("--no-checkpoint", action="store_true", help="keep the run in memory (no resume)")
    p.add_argument("--thread", default=None, help="the run's thread id (default: derived from the task)")
    p.add_argument("--resume", action="store_true", help="continue the checkpointed run of this thread")
    p.add_argument("--approve", choices=("yes", "no"), default=None, help="answer a pending plan approval")
    p.add_argument("--trace", type=Path, default=None, help="write every event as JSON lines")
    p.add_argument("--report", type=Path, default=None, help="write the run result (with its report) as JSON")
    p.add_argument("--concurrency", type=positive_int, default=None, help="subtasks run at once")
    p.add_argument("--no-progress", action="store_true", help="hide the progress display")
    p.add_argument(
        "--pool",
        default=None,
        metavar="URL",
        help="run subtasks on a Redis worker pool (redis://host:port; `mdap worker --role R --pipeline ...`)",
    )
    add_trace_detail_flag(p)
    add_otlp_flag(p)
    add_sandbox_flag(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    from mdap.agents import Pipeline

    factory = _FACTORY.match(args.target)
    if factory and args.roles is not None:
        raise ConfigError("give either --roles with a task text, or a pipeline.py:factory target, not both")
    task = args.task if factory else args.target
    if not factory and args.task is not None:
        raise ConfigError(f"unexpected argument {args.task!r}: quote the task text, or use pipeline.py:factory")
    if not task:
        raise ConfigError('no task text: mdap run pipeline.py:factory "task text"')
    _check_outputs(args)
    config = None
    if not factory:
        if args.roles is None:
            raise ConfigError("a task text needs --roles roles.json (or run path/to/pipeline.py:factory)")
        from mdap.agents.config import load_config

        config = load_config(args.roles)
    async with AsyncExitStack() as stack:
        price = price_of(args, config.price if config is not None else None)
        model = await _model(args, stack, price) if args.model or not factory else None
        if factory:
            pipeline = load_factory(factory["file"], factory["name"], model)
        else:
            assert model is not None and config is not None
            pipeline = config.build(model, base=args.roles.parent)
        if not isinstance(pipeline, Pipeline):
            raise ConfigError(f"{args.target} returned {type(pipeline).__name__}, not a mdap Pipeline")
        use_sandbox(args, check=any(role.tools for role in pipeline.roles))
        if args.no_checkpoint:
            pipeline.checkpoint(None)
        elif args.checkpoint is not None:
            pipeline.checkpoint(args.checkpoint)
        if args.concurrency is not None:
            pipeline.policy(max_concurrency=args.concurrency)
        if args.trace is not None:
            pipeline.trace(args.trace, detail=args.trace_detail)
        provider = stack.enter_context(otlp_exporter(args))  # shut down (flushed) after the run
        if provider is not None:
            from mdap.agents.telemetry import instrument

            instrument(pipeline, provider)
        if args.pool is not None:
            from mdap.agents.pool_runner import pool_runner
            from mdap.pool import RedisPool

            pipeline.runner(pool_runner(await stack.enter_async_context(RedisPool(args.pool))))
        progress = None if args.no_progress else _Progress()
        if progress is not None:
            pipeline.on("*", progress)
        approve = None if args.approve is None else args.approve == "yes"
        outputs = _pipeline_outputs(pipeline)  # a factory's own checkpoint and trace too, before the first sample
        compiled = pipeline.compile()
        rerun = RERUN if compiled.checkpoint is not None else "free space and run again"
        try:
            with guard_outputs(*outputs, rerun=rerun):
                result = await compiled.run(task, thread_id=args.thread, resume=args.resume, approve=approve)
        finally:
            if progress is not None:
                progress.close()
    _print(result)
    code = 0 if result.status in ("ok", "partial", "awaiting_approval") else 1
    if result.status == "awaiting_approval":
        print(f"the plan waits for approval: mdap run ... --thread {result.thread_id} --resume --approve yes|no")
    if args.report is not None:  # after the answer is out: a report that cannot be written does not lose it
        try:
            write_atomic(args.report, result.model_dump_json(indent=2) + "\n", rerun=rerun)
        except OutputError as err:
            print(f"mdap: error: the run finished but its report was not written: {err}", file=sys.stderr)
            return 1
    return code


def _check_outputs(args: argparse.Namespace) -> None:
    """The output flags, before the model starts: a file, writable, in a folder that is (or can be) there."""
    if args.report is not None:
        check_output_file(args.report, "--report")
    if args.trace is not None:
        check_output_file(args.trace, "--trace", make_parents=True)
    if args.checkpoint is not None and not args.no_checkpoint:
        check_output_file(args.checkpoint, "--checkpoint", make_parents=True)


def _pipeline_outputs(pipeline: Any) -> list[Path]:
    """The files the run writes (checkpoint, its results file, trace), each checked to be writable."""
    from mdap.agents._store import SqliteStore

    compiled = pipeline.compile()
    out: list[Path] = []
    if compiled.checkpoint is not None:
        check_output_file(compiled.checkpoint, "--checkpoint", make_parents=True)
        out += [compiled.checkpoint, SqliteStore.beside(compiled.checkpoint)]
    if compiled.trace is not None:
        check_output_file(compiled.trace, "--trace", make_parents=True)
        out.append(compiled.trace)
    return out


async def _model(args: argparse.Namespace, stack: AsyncExitStack, price: Any) -> Any:
    from mdap.models import SIMULATED, SimulatedModel, open_model

    opening = open_model(
        args.model or SIMULATED,
        model_name=args.model_name,
        simulated=lambda: SimulatedModel(dry_run_model),
        price=price,
    )
    return await stack.enter_async_context(opening)


def load_factory(file: str, name: str, model: Any) -> Any:
    """Import ``file`` and call its function ``name`` (with ``model=`` when it takes a model and one was given).

    Raises:
        ConfigError: no such file or function, or the function needs arguments we cannot give.
    """
    path = Path(file)
    if not path.is_file():
        raise ConfigError(f"pipeline file {path} {'is not a file' if path.exists() else 'does not exist'}")
    spec = importlib.util.spec_from_file_location(f"_mdap_pipeline_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:  # a binary or non-UTF-8 file as well ("cannot contain null bytes", "Non-UTF-8 code")
        sys.modules.pop(spec.name, None)
        where = f" (line {err.lineno})" if err.lineno else ""
        raise ConfigError(f"pipeline file {path} is not valid Python: {err.msg}{where}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"{path} has no function {name!r}")
    params = inspect.signature(fn).parameters
    if model is not None and "model" in params:
        return fn(model=model)
    required = [p for p in params.values() if p.default is inspect.Parameter.empty and p.kind != p.VAR_KEYWORD]
    if required:
        raise ConfigError(f"{path}:{name} must be callable without arguments (or take model=); it needs {required[0]}")
    return fn()


def dry_run_model(messages: Sequence[Message]) -> str:
    """The scripted answers of ``--model simulated``: a plan with one subtask per role, chained; workers echo."""
    system = messages[0]["content"] if messages else ""
    if system.startswith("You are the planner"):
        roles = re.findall(r"^- ([A-Za-z][\w\-]*)", system.split("Reply with JSON only")[0], re.MULTILINE)
        subtasks = []
        for i, role in enumerate(roles):
            deps = [f"s{i - 1}"] if i else []
            subtasks.append({"id": f"s{i}", "instruction": f"do the {role} part", "role": role, "depends_on": deps})
        return json.dumps({"subtasks": subtasks})
    found = re.search(r"^Instruction: (.*)$", messages[-1]["content"], re.MULTILINE)
    return json.dumps({"answer": f"[simulated] {found.group(1) if found else 'done'}"})


class _Progress:
    """A one-line progress display on stderr: subtasks done / planned, failures, replans."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=0, unit="subtask", file=sys.stderr, dynamic_ncols=True, mininterval=0.2)
        self.failed = 0
        self.replans = 0

    def __call__(self, event: Any) -> None:
        kind, data = event.kind, event.data
        if kind in ("plan_created", "replanned"):
            self.bar.reset(total=len(data["plan"]["subtasks"]))
            self.replans += kind == "replanned"
        elif kind == "subtask_expanded":
            self.bar.total = (self.bar.total or 0) + len(data["children"])
        elif kind == "subtask_finished":
            self.failed += data["status"] != "ok"
            self.bar.update(1)
            self.bar.set_postfix(failed=self.failed, replans=self.replans, refresh=False)

    def close(self) -> None:
        self.bar.close()


def _print(result: Any) -> None:
    r = result.report
    print(f"status      {result.status}")
    print(
        f"subtasks    {r.steps} ok of {r.total_steps}"
        + (f", failed: {', '.join(result.failed)}" if result.failed else "")
    )
    u = r.usage
    print(f"samples     {u.samples} (red flags: {json.dumps(dict(u.red_flags))})")
    print(f"tokens      {u.completion_tokens} completion, {u.prompt_tokens} prompt; cost {format_cost(u.cost)}")
    print(f"wall        {r.wall_seconds:.3f} s; replans {result.replans}; thread {result.thread_id}")
    if result.error:
        print(f"error       {result.error}")
    print("answer:")
    print(result.answer if result.answer is not None else "(none)")
