"""The default SWE-bench pipeline, MASAI-style: modules with one job each that pass compact artifacts.

    test_template ──> reproduce ──┐
    localize ─────────────────────┴──> fix0 .. fixN-1 ──> rank

- ``test_template`` (tools: read, list, search, shell) finds how this repository writes and runs tests and
  answers with a short template and the command.
- ``reproduce`` (tools: files, python, shell) writes a test that fails because of the issue and answers with
  its path (checked: the file must exist in the checkout).
- ``localize`` (tools: read, list, search) names the files and functions to change.
- ``fix<i>`` (tools: read, list, search) each propose one candidate fix as search/replace edits (or a diff),
  taking the first well-formed sample by default (``fixer_k=1``): the candidates are voted on by the ranker.
- ``rank`` (no model) turns each candidate into a patch in a throwaway worktree, runs the reproduction test
  on each, and picks one (:mod:`.ranker`); its answer, the pipeline's, is the chosen patch as JSON.

Workers act in the instance's checkout through the workspace tools (paths confined to it, subprocesses with
timeouts and resource limits); the subtasks run on a :class:`~mdap.agents.Pipeline` with a static plan.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mdap.agents import (
    Limits,
    LocalRunner,
    Pipeline,
    RunScope,
    Sandbox,
    Tool,
    Worker,
    WorkItem,
    WorkOutput,
    Workspace,
    file_tools,
    python_tool,
    shell_tool,
)
from mdap.errors import RedFlag
from mdap.models import ChatModel
from mdap.planners import Plan, StaticPlanner, Subtask
from mdap.voters import Voter, VoterSpec

from .instances import SWEInstance
from .patches import parse_fix
from .ranker import parse_targets, rank

__all__ = ["ROLES", "PipelineOptions", "masai_pipeline", "masai_plan"]

ROLES = ("test_template", "reproducer", "localizer", "fixer", "ranker")
"""The module (role) names, in pipeline order."""

_SYSTEM = {
    "test_template": (
        "You find out how a Python repository writes and runs its tests. Look at its test files and config; "
        "answer with a minimal test file template (imports and one test function) and the command that runs it."
    ),
    "reproducer": (
        "You reproduce bug reports as tests. Write one new pytest test file in the repository that fails "
        "because of the reported bug (and would pass once it is fixed); run it to see it fail. Do not fix the bug."
    ),
    "localizer": (
        "You localize bugs. Search and read the repository to find the files and functions that must change to "
        "fix the reported issue. Answer with one line per location: path, function, and why."
    ),
    "fixer": (
        "You fix bugs with minimal edits. Read the code at the locations given, then answer with the fix as "
        'JSON {"edits": [{"file": "path", "search": "exact lines to replace", "replace": "new lines"}]}: '
        "copy the search lines exactly from the file, including indentation. Do not change tests."
    ),
}


@dataclass
class PipelineOptions:
    """Settings of the default pipeline.

    Attributes:
        candidates: fixer subtasks (candidate patches) per instance.
        k: vote margin of each worker decision (first-to-ahead-by-k).
        fixer_k: the fixers' vote margin; 1 (the default) takes each fixer's first well-formed sample, since the
            candidates are meant to differ and the ranker votes over them.
        temperature: sampling temperature of the workers (the fixers' candidates differ by it).
        max_samples: sample cap per decision (a reached cap fails the subtask).
        max_tokens: completion token limit per sample.
        max_tool_rounds: tool rounds per worker before it must answer.
        tool_timeout_s: wall-clock limit of one python/shell tool call.
        test_timeout_s: limit of one reproduction test run in the ranker.
        subtask_timeout_s: limit of one subtask attempt.
        retries: extra attempts of a failed subtask.
        concurrency: subtasks of one instance running at once.
        plugin_autoload: let the ranker's pytest runs load every installed pytest plugin.
    """

    candidates: int = 3
    k: int = 2
    fixer_k: int = 1
    temperature: float = 0.7
    max_samples: int = 12
    max_tokens: int | None = 2048
    max_tool_rounds: int = 6
    tool_timeout_s: float = 60.0
    test_timeout_s: float = 120.0
    subtask_timeout_s: float = 900.0
    retries: int = 1
    concurrency: int = 3
    plugin_autoload: bool = False


def _text(value: str) -> str:
    out = value.strip()
    if not out:
        raise RedFlag("parse", "empty answer")
    return out


def _issue(inst: SWEInstance) -> str:
    hints = f"\n\nHints from the discussion:\n{inst.hints_text.strip()}" if inst.hints_text.strip() else ""
    return f"Issue in {inst.repo}:\n{inst.problem_statement.strip()}{hints}"


def masai_plan(instance: SWEInstance, candidates: int) -> Plan:
    """The static plan of one instance (see the module doc)."""
    issue = _issue(instance)
    python = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q"
    fixes = [
        Subtask(
            id=f"fix{i}",
            role="fixer",
            depends_on=["reproduce", "localize"],
            instruction=(
                f"{issue}\n\nPropose candidate fix {i + 1} of {candidates} for this issue: read the code at the "
                "locations found, then answer with the edits as JSON (see your instructions)."
            ),
        )
        for i in range(candidates)
    ]
    return Plan(
        subtasks=[
            Subtask(
                id="test_template",
                role="test_template",
                instruction=(
                    "Find how this repository's tests are written and run. Answer with a minimal test file "
                    f"template and the command to run one test file (tests run with: {python} PATH)."
                ),
            ),
            Subtask(
                id="reproduce",
                role="reproducer",
                depends_on=["test_template"],
                instruction=(
                    f"{issue}\n\nWrite a new test file (e.g. tests/test_issue_reproduction.py) whose test fails "
                    f"because of this issue; run it with `{python} PATH` to check that it fails. Answer with the "
                    "test file's path."
                ),
            ),
            Subtask(
                id="localize",
                role="localizer",
                instruction=f"{issue}\n\nFind the files and functions that must change to fix this issue.",
            ),
            *fixes,
            Subtask(
                id="rank",
                role="ranker",
                depends_on=["reproduce", *(f.id for f in fixes)],
                instruction="Rank the candidate fixes by the reproduction test and pick one.",
            ),
        ]
    )


class _MasaiRunner:
    """Runs the ranker in code and every other module on its model worker (the pipeline's step runner)."""

    def __init__(
        self,
        workers: Mapping[str, Worker],
        instance: SWEInstance,
        checkout: Path,
        sha: str,
        opts: PipelineOptions,
        scratch: Path,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.local = LocalRunner(workers)
        self.sandbox = sandbox
        self.instance = instance
        self.checkout = checkout
        self.sha = sha
        self.opts = opts
        self.scratch = scratch

    async def __call__(self, item: WorkItem, scope: RunScope) -> WorkOutput:
        if item.role != "ranker":
            return await self.local(item, scope)
        targets: list[str] = []
        fixes: list[tuple[str, str | None]] = []
        for art in item.artifacts:
            if art.id == "reproduce":
                targets = parse_targets(art.text) if art.ok else []
            elif art.id.startswith("fix"):
                fixes.append((art.id, art.text if art.ok else None))
        result = await asyncio.to_thread(
            rank,
            self.checkout,
            self.sha,
            fixes,
            targets,
            scratch_root=self.scratch,
            timeout_s=self.opts.test_timeout_s,
            plugin_autoload=self.opts.plugin_autoload,
            sandbox=self.sandbox,
        )
        return WorkOutput(answer=json.dumps(result.to_dict()))


def _reproducer_parser(checkout: Path) -> Callable[[str], str]:
    def parse(text: str) -> str:
        targets = [t for t in parse_targets(text) if (checkout / t.split("::", 1)[0]).is_file()]
        if not targets:
            raise RedFlag("parse", "the answer names no test file that exists in the repository")
        return " ".join(targets)

    return parse


def masai_pipeline(
    instance: SWEInstance,
    checkout: Path,
    sha: str,
    model: ChatModel,
    options: PipelineOptions | None = None,
    *,
    scratch: Path,
    trace: Path | None = None,
    sandbox: Sandbox | None = None,
) -> Pipeline:
    """The default pipeline for one instance, its workers confined to ``checkout`` (a checkout at ``sha``).

    Run it with ``await pipeline.run(instance.problem_statement)``; its answer is the ranker's JSON
    (:class:`~.ranker.RankResult`), whose ``patch`` is the prediction. The python and shell tools and the
    ranker's test runs go through ``sandbox`` (default: :meth:`~mdap.agents.Sandbox.default`, bubblewrap).
    """
    opts = options or PipelineOptions()
    ws = Workspace(checkout)
    limits = Limits(timeout_s=opts.tool_timeout_s, cpu_s=int(opts.tool_timeout_s), memory_mb=2048)
    files = {t.name: t for t in file_tools(ws)}
    readers: list[Tool] = [files["read_file"], files["list_files"], files["search_files"]]
    shell = shell_tool(ws, limits, sandbox=sandbox)

    def voter(k: int | None = None) -> Voter:
        margin = opts.k if k is None else k
        settings = {"k": margin, "temperature": opts.temperature, "max_tokens": opts.max_tokens}
        return VoterSpec.parse({**settings, "max_samples": max(opts.max_samples, margin)}, "SWE-bench voter").build()

    rounds = opts.max_tool_rounds
    plan = masai_plan(instance, opts.candidates)
    return (
        Pipeline(f"swebench:{instance.instance_id}", model=model)
        .planner(StaticPlanner(plan))
        .role(
            "test_template",
            tools=[*readers, shell],
            voter=voter(),
            system_prompt=_SYSTEM["test_template"],
            max_tool_rounds=rounds,
            answer_parser=_text,
        )
        .role(
            "reproducer",
            tools=[*files.values(), python_tool(ws, limits, sandbox=sandbox), shell],
            voter=voter(),
            system_prompt=_SYSTEM["reproducer"],
            max_tool_rounds=rounds,
            answer_parser=_reproducer_parser(ws.root),
        )
        .role(
            "localizer",
            tools=readers,
            voter=voter(),
            system_prompt=_SYSTEM["localizer"],
            max_tool_rounds=rounds,
            answer_parser=_text,
        )
        .role(
            "fixer",
            tools=readers,
            voter=voter(opts.fixer_k),
            system_prompt=_SYSTEM["fixer"],
            max_tool_rounds=rounds,
            answer_parser=parse_fix,
            max_answer_chars=60_000,
        )
        .role("ranker", description="ranks candidate fixes by the reproduction test (runs in code, no model)")
        .runner(lambda workers: _MasaiRunner(workers, instance, checkout, sha, opts, scratch, sandbox))
        .policy(
            max_concurrency=opts.concurrency,
            retries=opts.retries,
            backoff_s=0.0,
            max_replans=0,
            subtask_timeout_s=opts.subtask_timeout_s,
            artifact_chars=100_000,
        )
        .checkpoint(None)
        .trace(trace)
    )
