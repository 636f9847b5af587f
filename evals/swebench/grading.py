"""Local grading: apply a model patch and the test patch in a fresh checkout, run the tests, apply SWE-bench's rule.

For each prediction: a fresh checkout of the instance's repository at ``base_commit`` (from the local repo,
history up to that commit only), ``git apply`` the model patch, reset the files the test patch touches to the
base commit (as SWE-bench does, so a model cannot change the tests that judge it), apply the test patch, run
the test files of FAIL_TO_PASS and PASS_TO_PASS with pytest, and grade (:mod:`.rules`).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mdap._outputs import RERUN, write_atomic, writing
from mdap.agents import Sandbox
from mdap.errors import ConfigError

from ._proc import GitError, checkout_at, git, git_apply
from .instances import SWEInstance, inside, repo_path
from .predictions import Prediction
from .rules import TestsReport, grade_tests, grader
from .testrun import files_of_tests, run_pytest

__all__ = ["GradeReport", "InstanceGrade", "grade_instance", "grade_predictions", "patch_files"]

_DIFF_FILE = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.MULTILINE)


class InstanceGrade(BaseModel):
    """The grade of one prediction."""

    instance_id: str
    resolved: bool = False
    patch_exists: bool = Field(default=False, description="the model patch is not empty")
    patch_applied: bool = False
    tests_status: TestsReport = Field(default_factory=dict)
    error: str | None = Field(default=None, description="why grading could not run to the end, if it did not")
    grader: str = "mdap"
    seconds: float = 0.0


class GradeReport(BaseModel):
    """The report of a grading run; the ``*_ids`` fields are named as in SWE-bench's run report.

    Every submitted prediction is in exactly one of ``resolved_ids`` and ``unresolved_ids`` (an instance whose
    grading failed, e.g. a patch that does not apply, is unresolved and also listed in ``error_ids`` with its
    message in ``errors``). ``empty_patch_ids`` were graded too: their tests ran on the unchanged code.
    """

    schema_version: int = 1
    grader: str = "mdap"
    total_instances: int = 0
    submitted_instances: int = 0
    completed_instances: int = 0
    resolved_instances: int = 0
    unresolved_instances: int = 0
    empty_patch_instances: int = 0
    error_instances: int = 0
    resolved_rate: float = 0.0
    submitted_ids: list[str] = Field(default_factory=list)
    completed_ids: list[str] = Field(default_factory=list)
    incomplete_ids: list[str] = Field(default_factory=list, description="instances without a prediction")
    resolved_ids: list[str] = Field(default_factory=list)
    unresolved_ids: list[str] = Field(default_factory=list)
    empty_patch_ids: list[str] = Field(default_factory=list)
    error_ids: list[str] = Field(default_factory=list)
    errors: dict[str, str] = Field(default_factory=dict, description="instance id -> what went wrong")
    instances: dict[str, InstanceGrade] = Field(default_factory=dict)

    @classmethod
    def build(cls, grades: Sequence[InstanceGrade], instances: Sequence[SWEInstance], grader_name: str) -> GradeReport:
        """The report of ``grades`` over the instance set ``instances``."""
        order = {inst.instance_id: i for i, inst in enumerate(instances)}
        grades = sorted(grades, key=lambda g: order.get(g.instance_id, len(order)))
        submitted = [g.instance_id for g in grades]
        resolved = [g.instance_id for g in grades if g.resolved]
        errors = {g.instance_id: g.error for g in grades if g.error}
        done = set(submitted)
        return cls(
            grader=grader_name,
            total_instances=len(instances),
            submitted_instances=len(submitted),
            completed_instances=len(submitted) - len(errors),
            resolved_instances=len(resolved),
            unresolved_instances=len(submitted) - len(resolved),
            empty_patch_instances=sum(1 for g in grades if not g.patch_exists),
            error_instances=len(errors),
            resolved_rate=len(resolved) / len(instances) if instances else 0.0,
            submitted_ids=submitted,
            completed_ids=[i for i in submitted if i not in errors],
            incomplete_ids=[i.instance_id for i in instances if i.instance_id not in done],
            resolved_ids=resolved,
            unresolved_ids=[i for i in submitted if i not in set(resolved)],
            empty_patch_ids=[g.instance_id for g in grades if not g.patch_exists],
            error_ids=list(errors),
            errors=errors,
            instances={g.instance_id: g for g in grades},
        )

    def write(self, path: str | Path, *, rerun: str = RERUN) -> None:
        """Write the report as JSON, atomically (never half a file).

        Raises:
            OutputError: it could not be written (the message names ``path``; a full disk says so).
        """
        write_atomic(path, self.model_dump_json(indent=2) + "\n", rerun=rerun)


def patch_files(patch: str) -> list[str]:
    """The paths a unified git diff touches (both sides of renames), in order."""
    out: list[str] = []
    for a, b in _DIFF_FILE.findall(patch):
        out.extend(p for p in (a, b) if p not in out)
    return out


def _reset_test_files(checkout: Path, sha: str, test_patch: str) -> None:
    for path in patch_files(test_patch):
        target = checkout / path
        try:
            git(["cat-file", "-e", f"{sha}:{path}"], cwd=checkout)
        except GitError:
            if target.is_file() or target.is_symlink():
                target.unlink()  # a file the test patch creates: the model's version must not be there
            continue
        git(["checkout", "-q", sha, "--", path], cwd=checkout)


def grade_instance(
    instance: SWEInstance,
    patch: str | None,
    repos: Path,
    *,
    timeout_s: float = 300.0,
    work_dir: Path | None = None,
    log_dir: Path | None = None,
    kind: str = "auto",
    plugin_autoload: bool = False,
    sandbox: Sandbox | None = None,
) -> InstanceGrade:
    """Grade one model patch (blocking; see :func:`grade_predictions` for many at once).

    Args:
        instance: the instance.
        patch: the model patch (a unified diff); None or empty = no change.
        repos: the directory holding each repository at ``<name>``.
        timeout_s: limit of the test run.
        work_dir: where the temporary checkout goes (default: the system's temp dir).
        log_dir: write the test log to ``log_dir/<instance_id>.log`` when set.
        kind: ``"auto"``, ``"mdap"`` or ``"swebench"`` grading functions (see :func:`.rules.grader`).
        plugin_autoload: let pytest load every installed plugin (see :func:`.testrun.run_pytest`).
        sandbox: where the tests run (default: :meth:`~mdap.agents.Sandbox.default`, bubblewrap): the checkout
            is the only writable folder, no network, no environment of ours.

    Raises:
        ConfigError: no repository for the instance in ``repos``, or ``kind="swebench"`` without the package.
        SandboxError: the sandbox cannot run here.
    """
    t0 = time.perf_counter()
    source = repo_path(repos, instance)
    log_file = inside(log_dir, f"{instance.instance_id}.log") if log_dir is not None else None
    grade = InstanceGrade(instance_id=instance.instance_id, patch_exists=bool(patch and patch.strip()))
    try:
        grade.grader = grader(kind)[0]
    except ImportError as err:
        raise ConfigError(str(err)) from None
    tmp = Path(tempfile.mkdtemp(prefix="mdap-grade-", dir=work_dir))
    checkout = inside(tmp, instance.name)
    log = ""
    try:
        try:
            sha = checkout_at(source, instance.base_commit, checkout)
        except (ConfigError, GitError) as err:
            grade.error = f"checkout failed: {err}"
            return grade
        try:
            git_apply(checkout, patch or "")
        except GitError as err:
            grade.error = f"the model patch does not apply: {err}"
            return grade
        grade.patch_applied = True
        try:
            _reset_test_files(checkout, sha, instance.test_patch)
            git_apply(checkout, instance.test_patch)
        except GitError as err:
            grade.error = f"the instance's test patch does not apply: {err}"
            return grade
        tests = [*instance.FAIL_TO_PASS, *instance.PASS_TO_PASS]
        outcome = run_pytest(
            checkout, files_of_tests(tests), timeout_s=timeout_s, plugin_autoload=plugin_autoload, sandbox=sandbox
        )
        log = outcome.log
        name, report, resolved = grade_tests(outcome.statuses, instance.FAIL_TO_PASS, instance.PASS_TO_PASS, kind=kind)
        grade.grader, grade.tests_status = name, report
        if outcome.timed_out:
            grade.error = f"the tests timed out after {timeout_s:g}s"
        else:
            grade.resolved = resolved
        return grade
    finally:
        grade.seconds = round(time.perf_counter() - t0, 3)
        if log_file is not None:
            with writing(log_file):
                log_file.parent.mkdir(parents=True, exist_ok=True)
                log_file.write_text(log or (grade.error or "") + "\n")
        shutil.rmtree(tmp, ignore_errors=True)


async def grade_predictions(
    predictions: Mapping[str, Prediction],
    instances: Sequence[SWEInstance],
    repos: Path,
    *,
    workers: int = 1,
    timeout_s: float = 300.0,
    log_dir: Path | None = None,
    kind: str = "auto",
    plugin_autoload: bool = False,
    on_done: Callable[[InstanceGrade], Any] | None = None,
    sandbox: Sandbox | None = None,
) -> GradeReport:
    """Grade every prediction of an instance in ``instances``, ``workers`` at a time.

    Raises:
        ConfigError: a prediction names an instance that is not in ``instances``, a repository is missing,
            or ``kind="swebench"`` without the package.
    """
    known = {i.instance_id: i for i in instances}
    unknown = [i for i in predictions if i not in known]
    if unknown:
        raise ConfigError(
            f"predictions for instances not in the instance file: {', '.join(unknown[:5])}"
            + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
        )
    try:
        name = grader(kind)[0]
    except ImportError as err:
        raise ConfigError(str(err)) from None
    todo = [known[i] for i in predictions]
    for inst in todo:
        repo_path(repos, inst)  # every repository must be there before anything runs
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    gate = asyncio.Semaphore(workers)

    async def one(inst: SWEInstance) -> InstanceGrade:
        async with gate:
            g = await asyncio.to_thread(
                grade_instance,
                inst,
                predictions[inst.instance_id].model_patch,
                repos,
                timeout_s=timeout_s,
                log_dir=log_dir,
                kind=kind,
                plugin_autoload=plugin_autoload,
                sandbox=sandbox,
            )
        if on_done is not None:
            on_done(g)
        return g

    grades = await asyncio.gather(*(one(i) for i in todo))
    return GradeReport.build(grades, instances, name)
