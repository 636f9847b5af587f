"""``mdap bench swebench``: run SWE-bench instances through the default pipeline, or grade predictions alone."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdap._cli._args import (
    id_list,
    input_dir,
    input_file,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    probability,
)
from mdap._cli._price import add_price_flags, price_of
from mdap._cli._sandbox import add_sandbox_flag, use_sandbox
from mdap._outputs import check_output_dir, check_output_file, guard_outputs
from mdap._redact import redact
from mdap.errors import ConfigError, OutputError

if TYPE_CHECKING:
    from mdap.agents import Sandbox

__all__ = ["add_parser"]

_REGRADE = "free space and grade again"


def add_parser(suites: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``swebench`` suite to ``mdap bench``."""
    p = suites.add_parser(
        "swebench",
        help="SWE-bench: MASAI-style pipeline on local repos, local grading, predictions JSONL",
        description="Run SWE-bench instances (a JSON/JSONL/parquet instance file; mdap never downloads it) through "
        "the default pipeline (test template -> reproducer -> localizer -> fixers -> ranker) in checkouts of the "
        "local repositories DIR/<name>, grade each patch by running its tests, and write predictions.jsonl, "
        "trajectories/, results.jsonl, report.json and summary.json. With --grade-only, grade a predictions "
        "file from any tool and write the report.",
    )
    p.add_argument(
        "--instances",
        type=input_file(binary_suffixes=(".parquet",)),
        required=True,
        help="SWE-bench instance file (.json, .jsonl, .parquet)",
    )
    p.add_argument(
        "--repos", type=input_dir(), required=True, help="folder with a git repo per instance repo: DIR/<name>"
    )
    p.add_argument(
        "--ids", type=id_list("instance ids"), default=None, help="only these instance ids (comma-separated)"
    )
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N instances after --ids")
    g = p.add_argument_group("grading alone")
    g.add_argument("--grade-only", action="store_true", help="grade --predictions and write --report; run no model")
    g.add_argument("--predictions", type=input_file(), default=None, help="predictions file (JSONL or JSON) to grade")
    g.add_argument("--report", type=Path, default=None, help="where the grading report JSON goes")
    g.add_argument(
        "--harness",
        choices=("local", "official"),
        default="local",
        help="local (default: checkouts + pytest here) or official (the swebench harness, Docker)",
    )
    g.add_argument(
        "--grader",
        choices=("auto", "mdap", "swebench"),
        default="auto",
        help="grading rule: auto (swebench package if installed, else mdap), mdap, swebench",
    )
    g.add_argument("--run-id", default="mdap", help="official harness: the run id")
    r = p.add_argument_group("running the pipeline")
    r.add_argument(
        "--model",
        default="simulated",
        help="simulated (a dry run: an oracle that solves --solve-rate of the instances) | local | local:PATH | "
        "http(s)://server/v1",
    )
    r.add_argument("--model-name", default=None, help="the served model name (URL backends)")
    r.add_argument("--adapter", default=None, help="LoRA adapter name the samples come from")
    add_price_flags(r)
    r.add_argument("--solve-rate", type=probability, default=1.0, help="simulated: fraction of instances it solves")
    r.add_argument("--seed", type=nonneg_int, default=0, help="simulated: seed")
    r.add_argument("--candidates", type=positive_int, default=3, help="candidate patches (fixer subtasks) per instance")
    r.add_argument("--k", type=positive_int, default=2, help="vote margin of the workers' decisions (default 2)")
    r.add_argument(
        "--fixer-k", type=positive_int, default=1, help="vote margin of each fixer (default 1: its first fix)"
    )
    r.add_argument("--temperature", type=nonneg_float, default=0.7, help="sampling temperature")
    r.add_argument("--max-samples", type=positive_int, default=12, help="sample cap per decision (default 12)")
    r.add_argument("--max-tokens", type=positive_int, default=2048, help="completion token limit per sample")
    r.add_argument("--max-tool-rounds", type=nonneg_int, default=6, help="tool rounds per worker (default 6)")
    r.add_argument("--tool-timeout", type=positive_float, default=60.0, help="seconds per python/shell tool call")
    r.add_argument("--test-timeout", type=positive_float, default=300.0, help="seconds per test run (ranker, grading)")
    r.add_argument("--workers", type=positive_int, default=1, help="instances run (or graded) at once (default 1)")
    r.add_argument("--out", type=Path, default=None, help="output folder (default .mdap/swebench)")
    r.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished instances")
    r.add_argument("--no-grade", action="store_true", help="only write predictions; do not run the tests")
    r.add_argument("--keep-checkouts", action="store_true", help="keep each instance's checkout under --out/work")
    p.add_argument(
        "--plugin-autoload",
        action="store_true",
        help="let the repos' pytest runs load every installed pytest plugin (off: faster)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_sandbox_flag(p)
    p.set_defaults(handler=_swebench)


def _swebench(args: argparse.Namespace) -> int:
    from mdap.evals.swebench import load_instances

    instances = load_instances(args.instances, ids=args.ids)
    if args.limit is not None:
        if args.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {args.limit}")
        instances = instances[: args.limit]
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if not 0.0 <= args.solve_rate <= 1.0:  # NaN fails too
        raise ConfigError(f"--solve-rate is a fraction of the instances: between 0 and 1, got {args.solve_rate:g}")
    box = use_sandbox(args, check=args.harness != "official" or not args.grade_only)
    if args.grade_only:
        return _grade_only(args, instances, box)
    if args.predictions is not None or args.report is not None:
        raise ConfigError("--predictions and --report go with --grade-only (a run writes its own under --out)")
    return asyncio.run(_run(args, instances, box))


def _grade_only(args: argparse.Namespace, instances: list[Any], box: Sandbox) -> int:
    from mdap.evals.swebench import grade_predictions, grade_table, load_predictions, run_official

    if args.predictions is None or args.report is None:
        raise ConfigError("--grade-only needs --predictions FILE and --report FILE")
    check_output_file(args.report, "--report")
    parent = args.report.parent
    if args.harness != "official":
        check_output_dir(parent / "logs", "--report's test logs")
    predictions = load_predictions(args.predictions, unique=True)  # before any grading: one prediction each
    if args.harness == "official":
        from mdap.evals.swebench.instances import check_name

        try:  # the harness names folders and the report after it
            check_name(args.run_id, "--run-id")
        except ValueError as err:
            raise ConfigError(str(err)) from None
        path = run_official(
            args.predictions,
            args.instances,
            args.report,
            run_id=args.run_id,
            workers=args.workers,
            timeout_s=args.test_timeout,
            ids=[i.instance_id for i in instances] if args.ids or args.limit else None,
        )
        print(f"wrote {path} (swebench.harness.run_evaluation)")
        return 0
    wanted = {i.instance_id for i in instances}
    if args.ids or args.limit:
        predictions = {k: v for k, v in predictions.items() if k in wanted}
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(predictions), desc="grading", unit="inst", dynamic_ncols=True)
    try:
        with guard_outputs(parent / "logs", args.report, rerun=_REGRADE):
            report = asyncio.run(
                grade_predictions(
                    predictions,
                    instances,
                    args.repos,
                    workers=args.workers,
                    timeout_s=args.test_timeout,
                    kind=args.grader,
                    plugin_autoload=args.plugin_autoload,
                    log_dir=parent / "logs",
                    sandbox=box,
                    on_done=(lambda _g: bar.update(1)) if bar is not None else None,
                )
            )
    finally:
        if bar is not None:
            bar.close()
    print(grade_table(report))  # before the report is written: a report that cannot be written loses nothing
    try:
        report.write(args.report, rerun=_REGRADE)
    except OutputError as err:
        print(f"mdap: error: the grading finished but its report was not written: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.report}")
    if report.error_ids:
        _grading_errors(report.errors)
        return 1
    return 0


def _print_recorded(out: Path) -> None:
    from mdap.evals.swebench import InstanceResult

    path = out / "results.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    rows = []
    for line in lines:
        try:
            rows.append(InstanceResult.model_validate_json(line))
        except ValueError:
            continue  # a line cut short by the full disk
    if rows:
        resolved = sum(1 for r in rows if r.resolved)
        print(f"recorded in {path} so far: {len(rows)} instance(s), {resolved} resolved")
        for r in rows:
            shown = "-" if r.resolved is None else "yes" if r.resolved else "no"
            print(f"  {r.instance_id}  {r.status}  resolved {shown}")


def _grading_errors(errors: dict[str, str]) -> None:
    print(
        f"mdap: error: {len(errors)} prediction(s) could not be graded to the end: {', '.join(errors)}",
        file=sys.stderr,
    )
    for iid, error in errors.items():
        print(f"error {iid}: {error.splitlines()[0][:300] if error else ''}", file=sys.stderr)


async def _run(args: argparse.Namespace, instances: list[Any], box: Sandbox) -> int:
    from mdap.evals.swebench import PipelineOptions, run_swebench, run_table, simulated_swebench_model, solved_by_rate
    from mdap.models import SIMULATED, open_model

    if args.candidates < 1:
        raise ConfigError(f"--candidates must be >= 1, got {args.candidates}")
    out = args.out or Path(".mdap/swebench")
    check_output_dir(out, "--out")  # before a model is built
    # the name is stored in the predictions and the summary
    name = "mdap-simulated" if args.model == SIMULATED else redact(f"mdap-{args.model_name or args.model}")
    opening = open_model(
        args.model,
        model_name=args.model_name,
        adapter=args.adapter,
        price=price_of(args),
        simulated=lambda: simulated_swebench_model(
            instances, solved=solved_by_rate(instances, args.solve_rate, args.seed), seed=args.seed
        ),
    )
    options = PipelineOptions(
        candidates=args.candidates,
        k=args.k,
        fixer_k=args.fixer_k,
        temperature=args.temperature,
        max_samples=args.max_samples,
        max_tokens=args.max_tokens,
        max_tool_rounds=args.max_tool_rounds,
        tool_timeout_s=args.tool_timeout,
        test_timeout_s=args.test_timeout,
        plugin_autoload=args.plugin_autoload,
    )
    try:
        async with opening as model:
            with guard_outputs(out):
                summary, _report = await run_swebench(
                    instances,
                    args.repos,
                    out,
                    model,
                    model_name=name,
                    options=options,
                    workers=args.workers,
                    resume=args.resume,
                    grade=not args.no_grade,
                    grade_timeout_s=args.test_timeout,
                    keep_checkouts=args.keep_checkouts,
                    progress=not args.no_progress,
                    sandbox=box,
                )
    except OutputError:  # a full disk: what is recorded so far still goes to stdout, then the error
        _print_recorded(out)
        raise
    print(run_table(summary))
    report = "" if args.no_grade else ", report.json"
    print(f"wrote {out}/predictions.jsonl, trajectories/, results.jsonl, summary.json{report}")
    failed = [r for r in summary.per_instance if r.status == "error"]
    for r in failed:
        print(f"error {r.instance_id}: {(r.error or '')[:300]} (run again with --resume to retry it)")
    ungraded = {r.instance_id: r.grade.error for r in summary.per_instance if r.grade is not None and r.grade.error}
    if ungraded:
        _grading_errors(ungraded)
    return 1 if failed or ungraded else 0
