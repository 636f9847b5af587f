"""The ranker module: turn each fixer's answer into a patch, run the reproduction test on each, and pick one.

Ranking, best first: a candidate that makes the reproduction test pass (only when the test fails without a
fix, so it tells fixes apart), then the patch most candidates agree on (a majority vote over normalized
patches, :func:`~.patches.normalize_patch`), then the earliest candidate. Candidates that do not apply are
out. With no usable candidate the answer is the empty patch.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mdap.agents import Sandbox

from ._proc import GitError, git, git_apply
from .patches import PatchError, apply_fix, normalize_patch
from .testrun import TestRun, run_pytest

__all__ = ["Candidate", "RankResult", "choose", "parse_targets", "rank", "reproduction_patch", "scratch"]

_TARGET = re.compile(r"((?:[\w.-]+/)*[\w.-]+\.py)(::[^\s'\"`,;]+)?")


@dataclass
class Candidate:
    """One fixer's candidate, as the ranker saw it."""

    source: str
    patch: str = ""
    error: str | None = None
    key: str = ""
    repro_passed: bool | None = None
    votes: int = 0


@dataclass
class RankResult:
    """The ranker's decision: the chosen patch and why."""

    patch: str
    chosen: str | None
    candidates: list[Candidate] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    reproduction_fails_on_base: bool | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (the pipeline's answer, and the trajectory's record)."""
        return asdict(self)


def parse_targets(text: str) -> list[str]:
    """Test files or pytest node ids named in a reproducer's answer, in order."""
    out: list[str] = []
    for m in _TARGET.finditer(text):
        name = Path(m.group(1)).name
        if not (name.startswith("test") or name.endswith("_test.py")):
            continue  # a source file, not a test
        target = m.group(1) + (m.group(2) or "")
        if target not in out:
            out.append(target)
    files = {t for t in out if "::" not in t}
    return [t for t in out if "::" not in t or t.split("::", 1)[0] not in files]


@contextlib.contextmanager
def scratch(checkout: Path, sha: str, root: Path) -> Iterator[Path]:
    """A throwaway git worktree of ``checkout`` at ``sha`` under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"wt-{uuid.uuid4().hex[:10]}"
    git(["worktree", "add", "-q", "--detach", str(path.resolve()), sha], cwd=checkout)
    try:
        yield path
    finally:
        try:
            git(["worktree", "remove", "--force", str(path.resolve())], cwd=checkout)
        except GitError:
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(GitError):
                git(["worktree", "prune"], cwd=checkout)


def reproduction_patch(checkout: Path, sha: str, targets: Sequence[str]) -> str:
    """The reproducer's test files (those ``targets`` name) as a patch against ``sha``."""
    files = [f for f in dict.fromkeys(t.split("::", 1)[0] for t in targets) if (checkout / f).is_file()]
    if not files:
        return ""
    git(["add", "-A", "--", *files], cwd=checkout)
    return git(["diff", "--cached", "--no-color", sha, "--", *files], cwd=checkout)


def _passed(run: TestRun) -> bool:
    statuses = set(run.statuses.values())
    return not run.timed_out and run.exit_code == 0 and "PASSED" in statuses


def choose(candidates: Sequence[Candidate], informative: bool) -> Candidate | None:
    """The best usable candidate (see the module doc), or None; sets each candidate's ``votes``."""
    usable = [c for c in candidates if c.error is None and c.patch]
    counts: dict[str, int] = {}
    for c in usable:
        counts[c.key] = counts.get(c.key, 0) + 1
    for c in usable:
        c.votes = counts[c.key]
    if not usable:
        return None

    def score(item: tuple[int, Candidate]) -> tuple[bool, int, int]:
        index, c = item
        return (bool(informative and c.repro_passed), c.votes, -index)

    return max(enumerate(usable), key=score)[1]


def rank(
    checkout: Path,
    sha: str,
    fixes: Sequence[tuple[str, str | None]],
    targets: Sequence[str],
    *,
    scratch_root: Path,
    timeout_s: float = 120.0,
    plugin_autoload: bool = False,
    sandbox: Sandbox | None = None,
) -> RankResult:
    """Rank the candidate fixes of one instance (blocking: runs git and pytest).

    Args:
        checkout: the instance's checkout (its work tree holds the reproducer's test files).
        sha: the base commit.
        fixes: (source, canonical fix from :func:`~.patches.parse_fix` or None when that fixer failed).
        targets: the reproduction test's files or node ids ([] when there is no reproduction).
        scratch_root: where throwaway worktrees go.
        timeout_s: limit of each reproduction run.
        plugin_autoload: let pytest load every installed plugin (see :func:`~.testrun.run_pytest`).
        sandbox: where the reproduction runs (default: :meth:`~mdap.agents.Sandbox.default`, bubblewrap).
    """
    candidates: list[Candidate] = []
    for source, fix in fixes:
        cand = Candidate(source)
        candidates.append(cand)
        if fix is None:
            cand.error = "the fixer gave no fix"
            continue
        with scratch(checkout, sha, scratch_root) as tree:
            try:
                cand.patch = apply_fix(tree, fix, sha)
                cand.key = normalize_patch(cand.patch)
            except PatchError as err:
                cand.error = str(err)
    result = RankResult(patch="", chosen=None, candidates=candidates, targets=list(targets))
    repro = reproduction_patch(checkout, sha, targets) if targets else ""
    informative = False
    if repro:
        with scratch(checkout, sha, scratch_root) as tree:
            git_apply(tree, repro)
            base_run = run_pytest(tree, targets, timeout_s=timeout_s, plugin_autoload=plugin_autoload, sandbox=sandbox)
        informative = not _passed(base_run)
        result.reproduction_fails_on_base = informative
        if informative:
            seen: dict[str, bool] = {}
            for cand in candidates:
                if cand.error is not None or not cand.patch:
                    continue
                if cand.key not in seen:
                    seen[cand.key] = _run_candidate(
                        checkout, sha, cand.patch, repro, targets, scratch_root, timeout_s, plugin_autoload, sandbox
                    )
                cand.repro_passed = seen[cand.key]
    else:
        result.note = "no reproduction test: ranked by votes"
    best = choose(candidates, informative)
    if best is not None:
        result.patch, result.chosen = best.patch, best.source
    else:
        result.note = "no candidate applies: the empty patch"
    return result


def _run_candidate(
    checkout: Path,
    sha: str,
    patch: str,
    repro: str,
    targets: Sequence[str],
    root: Path,
    timeout_s: float,
    autoload: bool,
    sandbox: Sandbox | None,
) -> bool:
    with scratch(checkout, sha, root) as tree:
        try:
            git_apply(tree, patch)
            git_apply(tree, repro)
        except GitError:
            return False  # the candidate touches the reproduction test's files: it cannot be judged by it
        return _passed(run_pytest(tree, targets, timeout_s=timeout_s, plugin_autoload=autoload, sandbox=sandbox))
