"""``mdap adapters dataset|train|eval|diagnose``: distill voted decisions into a LoRA adapter and measure what
voting needs (per-state p, collision rate, k_min, cost)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from mdap._cli._args import (
    finite_float,
    input_dir,
    input_file,
    int_range,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
)
from mdap._outputs import check_output_dir, check_output_file, write_atomic
from mdap.errors import ConfigError

__all__ = ["add_parser"]

_RERUN = "free space and run again"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``adapters`` subcommand with its ``dataset``, ``train``, ``eval`` and ``diagnose`` actions."""
    p = sub.add_parser(
        "adapters",
        help="train LoRA adapters on voted decisions, and measure what voting needs",
        description="Build training data, train a worker adapter, and evaluate base vs adapter on held-out steps.",
    )
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    d = acts.add_parser("dataset", help="training examples from a teacher or a trace, with a held-out split")
    d.add_argument("--task", choices=["hanoi"], default="hanoi", help="the task (default hanoi)")
    d.add_argument("--disks", default="3..8", help="teacher trajectories: 3..8, 3,5 or 6 (default 3..8)")
    d.add_argument("--trace", type=input_file(), action="append", default=[], help="a run's JSONL trace (repeatable)")
    d.add_argument("--trace-disks", type=positive_int, default=None, help="the disks of the traced run(s)")
    d.add_argument("--no-teacher", action="store_true", help="only the traces, no teacher trajectories")
    d.add_argument("--no-rotations", action="store_true", help="teacher: no peg-relabelled copies")
    d.add_argument("--hard-weight", type=nonneg_float, default=4.0, help="hard-example factor (default 4)")
    d.add_argument("--heldout", type=nonneg_int, default=50, help="states held out for evaluation (default 50)")
    d.add_argument("--seed", type=nonneg_int, default=0, help="seed of the held-out split")
    d.add_argument("--out", type=Path, required=True, help="training JSONL; held-out goes to OUT's .heldout.jsonl")
    d.set_defaults(handler=_dataset)

    t = acts.add_parser("train", help="LoRA fine-tuning on a dataset (answer-only loss)")
    t.add_argument("--base", default="local", help="base model HF folder, or 'local' for the embedded SmolLM2")
    t.add_argument("--data", type=input_file(), required=True, help="training JSONL (mdap adapters dataset)")
    t.add_argument("--out", type=Path, default=None, help="adapter folder (default: the adapter store / ROLE)")
    t.add_argument("--role", default="worker", help="the role (and served name) of the adapter")
    t.add_argument("--rank", type=positive_int, default=16, help="LoRA rank (default 16)")
    t.add_argument("--alpha", type=positive_float, default=32.0, help="LoRA alpha (default 32)")
    t.add_argument("--targets", default=None, help="comma-separated module names (default: every projection)")
    t.add_argument("--steps", type=positive_int, default=250, help="optimizer steps per round (default 250)")
    t.add_argument("--batch-size", type=positive_int, default=8, help="examples per step (default 8)")
    t.add_argument("--lr", type=positive_float, default=5e-4, help="peak learning rate (default 5e-4)")
    t.add_argument("--seed", type=nonneg_int, default=0, help="seed (default 0)")
    t.add_argument("--checkpoint-every", type=positive_int, default=50, help="steps between checkpoints (default 50)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT")
    t.add_argument(
        "--init-adapter",
        type=input_dir(holding="adapter_config.json"),
        default=None,
        help="start from this adapter's weights",
    )
    t.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    t.add_argument("--rounds", type=positive_int, default=1, help="rounds: train, mine states still wrong, train again")
    t.add_argument("--mine-states", type=positive_int, default=60, help="rounds: training states measured per round")
    t.add_argument(
        "--mine",
        choices=["sample", "exact"],
        default="sample",
        help="rounds: measure p by sampling through the server, or exactly (one forward pass per batch; cheaper)",
    )
    t.add_argument("--mine-samples", type=int_range(2), default=10, help="rounds: samples per mined state (default 10)")
    t.add_argument(
        "--hard-weight", type=nonneg_float, default=4.0, help="rounds: a mined state weighs 1 + this * (1 - p)"
    )
    t.add_argument(
        "--mine-first", action="store_true", help="rounds: mine --init-adapter before the first round as well"
    )
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    t.set_defaults(handler=_train)

    e = acts.add_parser("eval", help="per-state p, collision rate, k_min and cost on held-out steps (real server)")
    e.add_argument("--adapter", default=None, help="adapter name (found in the adapter store unless --path)")
    e.add_argument("--path", type=input_dir(holding="adapter_config.json"), default=None, help="the adapter's folder")
    e.add_argument("--data", type=input_file(), required=True, help="held-out JSONL (OUT.heldout.jsonl of dataset)")
    e.add_argument("--samples", type=int_range(2), default=20, help="samples per state (default 20)")
    e.add_argument("--temperature", type=nonneg_float, default=0.7, help="sampling temperature (default 0.7)")
    e.add_argument("--max-tokens", type=positive_int, default=96, help="completion token limit (longer = red flag)")
    e.add_argument("--states", type=positive_int, default=None, help="evaluate N evenly spaced states")
    e.add_argument("--decorrelate", action="store_true", help="also spread samples over peg rotations")
    e.add_argument("--no-base", action="store_true", help="skip the base model")
    e.add_argument("--no-plain", action="store_true", help="skip the adapter without decorrelated sampling")
    e.add_argument("--steps", type=positive_int, default=63, help="run size for k_min and cost (default 63 = 6 disks)")
    e.add_argument(
        "--target",
        type=finite_float(0.0, 1.0, low_open=True, high_open=True),
        default=0.95,
        help="whole-run success target (default 0.95)",
    )
    e.add_argument(
        "--timeout", type=positive_float, default=900.0, help="seconds to wait for one request (default 900)"
    )
    e.add_argument(
        "--report", type=Path, default=None, help="write the full reports (per state) as JSON, each when measured"
    )
    e.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    e.set_defaults(handler=_eval)

    g = acts.add_parser("diagnose", help="reliability diagnostics of a run's trace")
    g.add_argument("trace", type=input_file(), help="JSONL trace (mdap hanoi --trace)")
    g.add_argument("--steps", type=positive_int, default=None, help="run size for k (default: the trace's)")
    g.set_defaults(handler=_diagnose)


def _dataset(args: argparse.Namespace) -> int:
    from mdap.evals.distill import dedup, hanoi_teacher, hanoi_trace_examples, parse_disks, split_heldout
    from mdap.models.lora_data import write_examples

    check_output_file(args.out, "--out", make_parents=True)
    check_output_file(args.out.with_suffix(".heldout.jsonl"), "--out (its held-out file)", make_parents=True)
    examples = [] if args.no_teacher else hanoi_teacher(parse_disks(args.disks), rotations=not args.no_rotations)
    for trace in args.trace:
        if args.trace_disks is None:
            raise ConfigError("--trace needs --trace-disks: the number of disks of the traced run")
        examples += hanoi_trace_examples(trace, args.trace_disks, factor=args.hard_weight)
    if not examples:
        raise ConfigError("no examples: give --trace files or drop --no-teacher")
    unique = dedup(examples)
    train, held = split_heldout(unique, args.heldout, seed=args.seed)
    heldout_path = args.out.with_suffix(".heldout.jsonl")
    write_examples(args.out, train)
    write_examples(heldout_path, held)
    hard = sum(ex.weight > 1 for ex in train)
    print(f"{len(examples)} examples, {len(unique)} unique, {hard} weighted as hard")
    print(f"train     {len(train):>6}  {args.out}")
    print(f"held-out  {len(held):>6}  {heldout_path}")
    return 0


def _base(text: str) -> Path:
    if text == "local":
        from mdap.models.local import local_model_dir

        return local_model_dir()
    return Path(text).expanduser()


def _train(args: argparse.Namespace) -> int:
    from mdap.models.adapter_store import adapters_dir
    from mdap.models.lora_data import read_examples
    from mdap.models.training import DEFAULT_TARGETS, TrainConfig, train_adapter

    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip()) if args.targets else DEFAULT_TARGETS
    check_output_dir(args.out or adapters_dir() / args.role, "--out")
    read_examples(args.data)  # bad training data is named before the base model is prepared (minutes, once)
    cfg = TrainConfig.build(
        base=_base(args.base), data=args.data, out=args.out or adapters_dir() / args.role, role=args.role,
        rank=args.rank, alpha=args.alpha, targets=targets, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, checkpoint_every=args.checkpoint_every, resume=args.resume, init_adapter=args.init_adapter,
        threads=args.threads, progress=not args.no_progress,
    )  # fmt: skip
    if args.rounds > 1 or args.mine_first:
        from mdap.evals.distill.compare import train_rounds
        from mdap.models import LocalModel

        if args.mine_samples < 2:
            raise ConfigError(f"--mine-samples must be at least 2, got {args.mine_samples}")

        def serve(name: str, folder: Path) -> Any:
            return LocalModel(adapters={name: folder}, max_lora_rank=max(16, cfg.rank))

        results = asyncio.run(
            train_rounds(
                cfg, args.rounds, serve, mine_states=args.mine_states, mine_samples=args.mine_samples,
                factor=args.hard_weight, mine_first=args.mine_first, mine=args.mine,
            )
        )  # fmt: skip
        for i, (res, rep) in enumerate(results, 1):
            mined = (
                ""
                if rep is None
                else (
                    f", data weighted by {rep.method} mining of {rep.states} states "
                    f"(mean p {rep.mean_p:.2f}, p>0.5: {rep.fraction_above_half:.2f})"
                )
            )
            print(f"round {i}: {res.steps} steps, loss {res.final_loss:.4f}, {res.seconds:.0f} s{mined}")
    else:
        res = train_adapter(cfg)
        print(f"{res.steps} steps, final loss {res.final_loss:.4f}, {res.examples_per_second:.2f} examples/s, "
              f"{res.seconds:.0f} s")  # fmt: skip
    print(f"adapter {cfg.role!r} written to {cfg.out} (serve: vllm serve BASE --enable-lora --lora-modules "
          f"{cfg.role}={cfg.out})")  # fmt: skip
    return 0


def _eval(args: argparse.Namespace) -> int:
    from mdap.evals.distill.compare import compare_models, record_eval
    from mdap.models import LocalModel
    from mdap.models.adapter_store import resolve_adapter
    from mdap.models.lora_data import read_examples

    if args.samples < 2:
        raise ConfigError(f"--samples must be at least 2, got {args.samples}")
    if args.report is not None:
        check_output_file(args.report, "--report")
    if args.path is not None and not args.adapter:
        raise ConfigError("--path needs --adapter NAME: the name the adapter in that folder is served under")
    adapter = resolve_adapter(args.adapter, args.path) if args.adapter else None
    examples = read_examples(args.data)
    if args.states is not None and args.states < len(examples):  # evenly spaced: every task size stays in
        examples = [examples[i * len(examples) // args.states] for i in range(args.states)]
    rank = adapter.rank if adapter else None

    done: list[Any] = []

    def save(report: Any) -> None:  # each report as soon as it is measured: a stopped run keeps it
        done.append(report)
        print(f"measured {report.model}{' +decorrelated' if report.decorrelated else ''}", file=sys.stderr)
        if args.report is not None:
            write_atomic(args.report, json.dumps([r.model_dump() for r in done], indent=2), rerun=_RERUN)

    async def run() -> list[Any]:
        served = {adapter.name: adapter.path} if adapter else None
        # a CPU server compiles its LoRA kernels on the first batches: wait for them rather than retry
        client = {"timeout": args.timeout, "max_retries": 1}
        async with LocalModel(adapters=served, max_lora_rank=max(16, rank or 16), client_options=client) as model:
            return await compare_models(
                model, examples, adapter=adapter.name if adapter else None, base=not args.no_base,
                plain=not args.no_plain, decorrelate=args.decorrelate, samples=args.samples,
                temperature=args.temperature, steps=args.steps, target=args.target, max_tokens=args.max_tokens,
                progress=not args.no_progress, on_report=save,
            )  # fmt: skip

    reports = asyncio.run(run())
    _table([r.headline() for r in reports])
    for r in reports:
        for w in r.warnings:
            print(f"warning ({r.model}{' +decorrelated' if r.decorrelated else ''}): {w}", file=sys.stderr)
    if adapter is not None:
        record_eval(adapter, [r for r in reports if r.model != "base"])
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from mdap.voters import trace_calibration

    cal = trace_calibration(args.trace)
    steps = args.steps or max(1, len(cal.per_step))
    print(json.dumps(cal.summary(steps), indent=2))
    return 0


def _table(rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    cells = [[("-" if r[k] is None else str(r[k])) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))
