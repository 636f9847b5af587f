"""Every flag of every subcommand, walked from the argparse definitions, given bad values: each must end in a
clean error (exit 2 for bad input, or 1 for an output that could not be written), a message on stderr that names
the flag or the path, no traceback, within 20 s.

The walk reads ``mdap.cli.build_parser()``: a new subcommand or flag is covered by itself. A new subcommand needs
a minimal command line in ``BASES`` (the test says so when one is missing). A value that is genuinely valid for a
flag is listed in ``VALID`` with the reason; those cases run and must exit 0 - except on the commands in
``EXPENSIVE`` (servers, training, real models), where only bad values are run, and must fail before binding or
loading anything.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mdap.cli import build_parser

TIMEOUT_S = 20.0
PARALLEL = 3

NUMBERS = ("nan", "inf", "-1", "1e309", "abc")
# A path whose parents are missing and cannot be made: the tests run as root, where `mkdir -p /nonexistent/x`
# succeeds (and litters the machine); nothing can be created under /proc.
MISSING = "/proc/nonexistent/x/y"
BINARY = bytes(range(256)) * 8 + b"\xff\xfe\x00garbage"  # NUL bytes, and not UTF-8
PATHS = ("directory", "binary", "missing-parent", "proc-version")

# Name parts (of dest / metavar / option) that make an untyped flag path-like.
PATH_WORDS = {
    "path", "file", "dir", "out", "report", "trace", "checkpoint", "data", "roles", "pipeline", "predictions",
    "config", "instances", "repos", "log",
}  # fmt: skip

# (path kind, corpus value) pairs that are a valid input, and why. Everything else in the corpus is bad input.
VALID: dict[tuple[str, str], str] = {
    ("output_file", "binary"): "an existing file given as an output file is overwritten",
    ("output_dir", "directory"): "an existing (empty) directory is a fine output directory",
}

# Commands whose valid run would start a server, train, or need a real model / Redis: only bad values run.
EXPENSIVE = {("serve",), ("worker",), ("pool", "status"), ("adapters", "train"), ("adapters", "eval")}


@dataclass
class Inputs:
    """Files the minimal command lines refer to (built once)."""

    root: Path
    roles: Path
    attribution: Path
    train: Path
    heldout: Path
    trace: Path
    instances: Path
    repos: Path
    predictions: Path


@dataclass
class Base:
    """A minimal valid command line: positionals by dest (in order), then options."""

    positionals: dict[str, str]
    options: list[str] = field(default_factory=list)
    # per-dest replacements of ``options``, for a flag that only counts together with others (they hold the flag
    # itself with a valid value, which a case replaces with its bad one)
    when: dict[str, list[str]] = field(default_factory=dict)


def _bases(i: Inputs) -> dict[tuple[str, ...], Base]:
    redis = "redis://127.0.0.1:1"  # nothing listens there; only bad values are run against it
    grade = ["--instances", str(i.instances), "--repos", str(i.repos), "--limit", "1", "--no-progress"]
    return {
        ("run",): Base(
            {"target": "say hello", "task": ""},
            ["--roles", str(i.roles), "--model", "simulated", "--no-progress"],
        ),
        ("hanoi",): Base({}, ["--disks", "2", "--model", "simulated", "--no-progress"]),
        ("serve",): Base({}, ["--base", "local"]),
        ("worker",): Base({}, ["--redis", redis, "--role", "hanoi", "--model", "simulated"]),
        ("pool", "status"): Base({}, ["--redis", redis, "--timeout", "1"]),
        ("attribute",): Base({"config": str(i.attribution)}, ["--no-plot", "--no-progress"]),
        ("adapters", "dataset"): Base({}, ["--disks", "3", "--heldout", "2", "--trace-disks", "2", "--out", "d.jsonl"]),
        ("adapters", "train"): Base({}, ["--data", str(i.train), "--out", "adapter", "--no-progress"]),
        ("adapters", "eval"): Base({}, ["--data", str(i.heldout), "--no-progress"]),
        ("adapters", "diagnose"): Base({"trace": str(i.trace)}),
        ("bench", "gaia"): Base({}, ["--data", "mini", "--limit", "1", "--model", "simulated", "--no-progress"]),
        ("bench", "swebench"): Base(
            {},
            [*grade, "--model", "simulated", "--candidates", "1", "--max-samples", "2", "--no-grade"],
            when={
                "predictions": [*grade, "--grade-only", "--report", "report.json", "--predictions", str(i.predictions)],
                "report": [*grade, "--grade-only", "--report", "report.json", "--predictions", str(i.predictions)],
            },
        ),
    }


@dataclass(frozen=True)
class Case:
    command: tuple[str, ...]
    flag: str  # the option string, or the positional's dest
    kind: str  # "number", "input_file", "input_dir", "output_file", "output_dir"
    value: str  # the corpus name ("nan", "directory", ...)
    argv: tuple[str, ...]
    shown: str  # the value as given on the command line

    @property
    def valid(self) -> bool:
        return (self.kind, self.value) in VALID

    def __str__(self) -> str:
        return f"mdap {' '.join(self.command)} {self.flag} {self.shown}"


Command = tuple[str, ...]


def leaf_parsers(
    parser: argparse.ArgumentParser, path: Command = ()
) -> Iterator[tuple[Command, argparse.ArgumentParser]]:
    """Every runnable (sub)command: the parsers that have no subcommands of their own."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for action in subs:
        seen: set[int] = set()
        for name, child in action.choices.items():
            if id(child) not in seen:  # aliases share the parser
                seen.add(id(child))
                yield from leaf_parsers(child, (*path, name))


def _words(action: argparse.Action) -> set[str]:
    names = [action.dest, str(action.metavar or ""), *action.option_strings]
    return {w for name in names for w in name.lower().replace("-", "_").replace("=", "_").split("_") if w}


def flag_kind(action: argparse.Action) -> str | None:
    """What a flag takes: "number", a path kind, or None (text, a switch: not in the corpus)."""
    if action.nargs == 0 or action.nargs == argparse.REMAINDER or isinstance(action, argparse._SubParsersAction):
        return None
    typ = action.type
    kind = getattr(typ, "path_kind", None)  # mdap._cli._args input/output path types say what they take
    if kind is not None:
        return str(kind)
    if typ in (int, float) or getattr(typ, "numeric", False) or _parses_a_number(typ):
        return "number"
    if action.choices is not None:  # argparse refuses any other value itself (--trace-detail counts|full)
        return None
    if not (typ is Path or _words(action) & PATH_WORDS):
        return None
    # Input paths are typed (mdap._cli._args.input_file/input_dir/...: they say so above); any other path is an
    # output. A new input flag left as type=Path is then taken for an output: its binary-file case must exit 0
    # and will not, which names the flag to type.
    text = (action.help or "").lower()
    is_dir = "folder" in text or "director" in text or "dir" in _words(action)
    return f"output_{'dir' if is_dir else 'file'}"


def _parses_a_number(typ: object) -> bool:
    """Whether a custom type turns "1" into a number (a type defined in a subcommand module, not in _args)."""
    if not callable(typ) or typ in (str, Path):
        return False
    try:
        value = typ("1")
    except Exception:
        return False
    return isinstance(value, int | float) and not isinstance(value, bool)


def corpus_value(name: str) -> str:
    return {
        # both made in each case's own working directory: a valid output case overwrites its binary file
        "directory": "a-directory",
        "binary": "binary.bin",
        "missing-parent": MISSING,
        "proc-version": "/proc/version",
    }.get(name, name)


def build_cases(bases: dict[tuple[str, ...], Base]) -> list[Case]:
    cases: list[Case] = []
    for command, parser in leaf_parsers(build_parser()):
        base = bases[command]
        for action in parser._actions:
            kind = flag_kind(action)
            if kind is None:
                continue
            flag = action.option_strings[-1] if action.option_strings else action.dest
            options = base.when.get(action.dest, base.options)
            if flag in options:  # the valid value a `when` line holds
                at = options.index(flag)
                options = options[:at] + options[at + 2 :]
            for name in NUMBERS if kind == "number" else PATHS:
                shown = corpus_value(name)
                if action.metavar and "=" in str(action.metavar):  # NAME=PATH
                    shown = f"x={shown}"
                positionals = [v for d, v in base.positionals.items() if v and d != action.dest]
                if action.option_strings:
                    argv = [*command, *options, f"{flag}={shown}", "--", *positionals]
                else:
                    at = list(base.positionals).index(action.dest)
                    values = list(base.positionals.values())
                    values[at] = shown
                    argv = [*command, *options, "--", *[v for v in values if v]]
                if not positionals and action.option_strings:
                    argv.remove("--")
                cases.append(Case(command, flag, kind, name, tuple(argv), shown))
    return cases


@dataclass
class Outcome:
    code: int | None  # None: timed out
    stderr: str
    seconds: float


def run_mdap(argv: tuple[str, ...] | list[str], cwd: Path) -> Outcome:
    """``python -m mdap.cli ARGV`` in ``cwd``, killed (with every process it started) after TIMEOUT_S."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
    env.pop("MDAP_LOCAL_URL", None)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdap.cli", *argv],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=TIMEOUT_S)
        return Outcome(proc.returncode, err, time.monotonic() - start)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        return Outcome(None, err, time.monotonic() - start)


def problem(case: Case, out: Outcome) -> str | None:
    """What is wrong with how ``case`` was handled, or None."""
    if out.code is None:
        return f"still running after {TIMEOUT_S:.0f} s"
    if "Traceback" in out.stderr:
        return f"traceback: {out.stderr.strip().splitlines()[-1][:200]}"
    if case.valid:
        return None if out.code == 0 else f"valid value, exit {out.code}: {out.stderr.strip()[-200:]}"
    wanted = {1, 2} if case.kind.startswith("output") else {2}
    if out.code not in wanted:
        return f"exit {out.code}, wanted {sorted(wanted)}"
    names = {case.flag, case.flag.lstrip("-"), case.flag.lstrip("-").replace("-", "_"), case.shown}
    if case.shown.startswith("x="):
        names.add(case.shown[2:])
    if not any(n in out.stderr for n in names):
        return f"stderr names neither the flag nor the value: {out.stderr.strip()[-200:]!r}"
    return None


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    from mdap.evals.swebench.mini import build_mini

    root = tmp_path_factory.mktemp("bad-input")
    roles = root / "roles.json"
    roles.write_text(json.dumps({"roles": [{"name": "writer", "description": "writes"}]}))
    attribution = root / "attr.json"
    attribution.write_text(
        json.dumps(
            {
                "name": "tiny",
                "pipeline": "hanoi",
                "base": {"disks": 2, "error_rate": 0.1},
                "slots": {"voter": {"default": {"k": 1}, "test": {"k": 2}}},
                "benchmark": {"runs": 1},
                "seeds": [0],
            }
        )
    )
    example = {"id": "e1", "messages": [{"role": "user", "content": "move?"}], "completion": "move = [1, 0, 2]"}
    train = root / "train.jsonl"
    train.write_text(json.dumps(example) + "\n")
    heldout = root / "held.jsonl"
    heldout.write_text(json.dumps(example) + "\n")
    trace = root / "trace.jsonl"
    made = run_mdap(["hanoi", "--disks", "2", "--no-progress", "--trace", str(trace), "--run-dir", "run"], root)
    assert made.code == 0 and trace.is_file(), made.stderr
    mini = build_mini(root / "swe")
    return Inputs(
        root, roles, attribution, train, heldout, trace, mini.instances_file, mini.repos, mini.gold_predictions
    )


def _run_all(cases: list[Case], scratch: Path) -> list[tuple[Case, Outcome]]:
    def one(indexed: tuple[int, Case]) -> tuple[Case, Outcome]:
        n, case = indexed
        cwd = scratch / f"case-{n}"
        (cwd / "a-directory").mkdir(parents=True)
        (cwd / "binary.bin").write_bytes(BINARY)
        return case, run_mdap(case.argv, cwd)

    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(one, enumerate(cases)))


def test_every_subcommand_has_a_minimal_command_line(inputs: Inputs) -> None:
    commands = {command for command, _ in leaf_parsers(build_parser())}
    assert commands == set(_bases(inputs)), "add the new subcommand's minimal command line to _bases()"


def test_the_walk_finds_the_flags_it_must(inputs: Inputs) -> None:
    cases = build_cases(_bases(inputs))
    flags = {(c.command, c.flag, c.kind) for c in cases}
    assert (("run",), "--concurrency", "number") in flags
    assert (("worker",), "--heartbeat", "number") in flags
    assert (("run",), "--roles", "input_file") in flags
    assert (("adapters", "diagnose"), "trace", "input_file") in flags
    assert (("attribute",), "--out", "output_dir") in flags
    assert (("adapters", "dataset"), "--out", "output_file") in flags
    assert not [c for c in cases if c.command == ("serve",) and c.flag == "--base"]  # text, not a path


def test_the_minimal_command_lines_succeed(inputs: Inputs, tmp_path: Path) -> None:
    """The cheap bases run to exit 0, so a corpus case that fails did so because of its one bad value."""
    bases = _bases(inputs)
    cheap = [c for c in bases if c not in EXPENSIVE]
    argvs = []
    for command in cheap:
        base = bases[command]
        argvs.append([*command, *base.options, *[v for v in base.positionals.values() if v]])
        argvs += [[*command, *options] for options in base.when.values()]
    for n in range(len(argvs)):
        (tmp_path / str(n)).mkdir()
    with ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = list(pool.map(lambda na: run_mdap(na[1], tmp_path / str(na[0])), enumerate(argvs)))
    failed = [
        f"mdap {' '.join(a)}: exit {o.code}: {o.stderr[-300:]}" for a, o in zip(argvs, outcomes, strict=True) if o.code
    ]
    assert not failed, "\n".join(failed)


def test_every_flag_rejects_bad_values_cleanly(inputs: Inputs, tmp_path: Path) -> None:
    cases = build_cases(_bases(inputs))
    runnable = [c for c in cases if not (c.valid and c.command in EXPENSIVE)]
    results = _run_all(runnable, tmp_path)
    bad = [f"{case}: {why}" for case, out in results if (why := problem(case, out)) is not None]
    slowest = sorted(results, key=lambda r: -r[1].seconds)[:3]
    kinds = sorted({c.kind for c in cases})
    by_kind = ", ".join(
        f"{k} {sum(c.kind == k and problem(c, o) is not None for c, o in results)}"
        f"/{sum(c.kind == k for c, _ in results)}"
        for k in kinds
    )
    print(f"\n{len(cases)} cases walked, {len(runnable)} run, {len(bad)} mishandled ({by_kind}); slowest:")
    for case, out in slowest:
        print(f"  {out.seconds:.1f} s  {case}")
    assert not bad, f"{len(bad)} of {len(runnable)} mishandled:\n" + "\n".join(bad)
