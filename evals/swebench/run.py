"""Run the default pipeline over SWE-bench instances: predictions, trajectories, local grades and a summary.

Per instance: a fresh checkout of the local repository at ``base_commit`` (``<out>/work/<id>``), the
pipeline (:mod:`.pipeline`) with its workers confined to it, the ranker's patch appended to
``predictions.jsonl``, the trajectory in ``trajectories/<id>.json`` (+ the event trace ``<id>.events.jsonl``),
and, unless grading is off, the local grade (:mod:`.grading`) in ``results.jsonl``. At the end the grading
report (``report.json``) and ``summary.json``. A resumed run skips every instance already in
``predictions.jsonl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mdap._outputs import is_disk_full, mentions_disk_full, output_error, write_atomic, writing
from mdap.agents import Sandbox
from mdap.errors import ConfigError, MdapError, OutputError
from mdap.models import ChatModel
from mdap.usage import Usage

from ._proc import GitError, checkout_at
from .grading import GradeReport, InstanceGrade, grade_instance
from .instances import SWEInstance, check_instance_id, check_name, inside, repo_path
from .pipeline import PipelineOptions, masai_pipeline
from .predictions import Prediction, append_prediction, load_predictions

__all__ = ["InstanceResult", "SWEBenchSummary", "run_instance", "run_swebench"]


class InstanceResult(BaseModel):
    """One finished instance: the pipeline's outcome and, when graded, its grade."""

    model_config = ConfigDict(extra="ignore")

    instance_id: str
    status: str = Field(description="the pipeline's status ('ok', 'partial', 'failed') or 'error'")
    patch_lines: int = 0
    chosen: str | None = None
    error: str | None = None
    seconds: float = 0.0
    samples: int = 0
    cost: float | None = Field(default=None, description="the model's cost; None when no price was set")
    resolved: bool | None = Field(default=None, description="None when not graded")
    grade: InstanceGrade | None = None


class SWEBenchSummary(BaseModel):
    """What a run did, over every instance finished so far (resumed ones included)."""

    model_name_or_path: str
    instances: int
    finished: int
    resumed: int
    graded: int
    resolved: int
    resolved_rate: float
    errors: int
    empty_patches: int
    samples: int
    cost: float | None = Field(default=None, description="summed cost; None when no price was set")
    wall_seconds: float
    out: str
    per_instance: list[InstanceResult] = Field(default_factory=list)


async def run_instance(
    instance: SWEInstance,
    repos: Path,
    out: Path,
    model: ChatModel,
    options: PipelineOptions,
    *,
    keep_checkout: bool = False,
    sandbox: Sandbox | None = None,
) -> tuple[str, dict[str, Any]]:
    """Run the pipeline on one instance; return (model patch, trajectory)."""
    work = inside(out / "work", instance.instance_id)
    if work.exists():
        shutil.rmtree(work)
    checkout = inside(work, instance.name)
    traj_dir = out / "trajectories"
    traj_dir.mkdir(parents=True, exist_ok=True)
    trace = inside(traj_dir, f"{instance.instance_id}.events.jsonl")
    trace.unlink(missing_ok=True)
    t0 = time.perf_counter()
    traj: dict[str, Any] = {"instance_id": instance.instance_id, "repo": instance.repo}
    try:
        sha = await asyncio.to_thread(checkout_at, repo_path(repos, instance), instance.base_commit, checkout)
        pipeline = masai_pipeline(
            instance, checkout, sha, model, options, scratch=work / "scratch", trace=trace, sandbox=sandbox
        )
        result = await pipeline.run(instance.problem_statement, thread_id=instance.instance_id)
        if result.status != "ok" and any(mentions_disk_full(r.error, work) for r in result.results.values()):
            raise OSError(errno.ENOSPC, "No space left on device")  # not the model's failure: not recorded
        decision = json.loads(result.answer) if result.answer else {}
        patch = str(decision.get("patch") or "")
        traj.update(
            status=result.status,
            error=result.error,
            plan=[s.model_dump() for s in result.plan.subtasks] if result.plan else None,
            modules={
                sid: {
                    "role": r.role,
                    "status": r.status,
                    "answer": r.answer if sid != "rank" else None,
                    "error": r.error,
                    "attempts": r.attempts,
                    "votes": r.votes,
                    "samples": r.usage.samples,
                    "cost": r.usage.cost,
                    "tool_calls": r.tool_calls,
                    "red_flags": dict(r.usage.red_flags),
                    "seconds": round(r.seconds, 3),
                }
                for sid, r in result.results.items()
            },
            ranker=decision,
            report=result.report.summary_dict(),
        )
    except (GitError, MdapError, OSError) as err:
        if isinstance(err, OutputError):
            raise
        if is_disk_full(err) or mentions_disk_full(str(err), work):  # git's own words, too: stop the run
            raise output_error(OSError(errno.ENOSPC, "No space left on device"), work) from err
        # an infrastructure failure (checkout, model server) of this instance: recorded as an error and
        # not as a prediction, so the other instances go on and a resumed run tries this one again
        patch = ""
        traj.update(status="error", error=f"{type(err).__name__}: {err}")
    finally:
        if not keep_checkout:
            shutil.rmtree(work, ignore_errors=True)
    traj["seconds"] = round(time.perf_counter() - t0, 3)
    traj["model_patch"] = patch
    write_atomic(inside(traj_dir, f"{instance.instance_id}.json"), json.dumps(traj, indent=2) + "\n")
    return patch, traj


async def run_swebench(
    instances: list[SWEInstance],
    repos: Path,
    out: Path,
    model: ChatModel,
    *,
    model_name: str,
    options: PipelineOptions | None = None,
    workers: int = 1,
    resume: bool = False,
    grade: bool = True,
    grade_timeout_s: float = 300.0,
    keep_checkouts: bool = False,
    progress: bool = True,
    on_done: Callable[[InstanceResult], Any] | None = None,
    sandbox: Sandbox | None = None,
) -> tuple[SWEBenchSummary, GradeReport | None]:
    """Run the default pipeline on ``instances`` and write the outputs under ``out`` (see the module doc).

    Raises:
        ConfigError: outputs exist in ``out`` and ``resume`` is off, a repository is missing, or bad settings.
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    opts = options or PipelineOptions()
    preds_file, results_file = out / "predictions.jsonl", out / "results.jsonl"
    done, previous = await asyncio.to_thread(_prepare, instances, repos, out, resume)
    wanted = {i.instance_id for i in instances}
    todo = [i for i in instances if i.instance_id not in done]
    resumed = len(wanted & set(done))
    t0 = time.perf_counter()
    bar = _bar(len(instances), resumed, progress)
    gate = asyncio.Semaphore(workers)
    lock = asyncio.Lock()
    results: dict[str, InstanceResult] = {k: v for k, v in previous.items() if k in wanted}
    failed: dict[str, InstanceResult] = {}

    async def one(inst: SWEInstance) -> None:
        async with gate:
            patch, traj = await run_instance(
                inst, repos, out, model, opts, keep_checkout=keep_checkouts, sandbox=sandbox
            )
            res = InstanceResult(
                instance_id=inst.instance_id,
                status=traj.get("status", "error"),
                patch_lines=len(patch.splitlines()),
                chosen=(traj.get("ranker") or {}).get("chosen"),
                error=traj.get("error"),
                seconds=traj["seconds"],
                samples=int((traj.get("report") or {}).get("samples", 0)),
                cost=(traj.get("report") or {}).get("cost"),
            )
            if grade and res.status != "error":
                g = await asyncio.to_thread(
                    grade_instance,
                    inst,
                    patch,
                    repos,
                    timeout_s=grade_timeout_s,
                    log_dir=out / "logs",
                    plugin_autoload=opts.plugin_autoload,
                    sandbox=sandbox,
                )
                res.grade, res.resolved = g, g.resolved
        async with lock:
            if res.status == "error":
                failed[inst.instance_id] = res
            else:
                pred = Prediction(instance_id=inst.instance_id, model_name_or_path=model_name, model_patch=patch)
                append_prediction(preds_file, pred)
                with writing(results_file), results_file.open("a", encoding="utf-8") as f:
                    f.write(res.model_dump_json() + "\n")
                results[inst.instance_id] = res
            if bar is not None:
                bar.update(1)
                bar.set_postfix(resolved=sum(1 for r in results.values() if r.resolved))
        if on_done is not None:
            on_done(res)

    try:
        await asyncio.gather(*(one(i) for i in todo))
    finally:
        if bar is not None:
            bar.close()
    report = None
    if grade:
        grades = [r.grade for r in results.values() if r.grade is not None]
        report = GradeReport.build(grades, instances, grades[0].grader if grades else "mdap")
        report.write(out / "report.json")
    everything = {**results, **failed}
    ordered = [everything[i.instance_id] for i in instances if i.instance_id in everything]
    resolved = sum(1 for r in ordered if r.resolved)
    summary = SWEBenchSummary(
        model_name_or_path=model_name,
        instances=len(instances),
        finished=len(ordered) - len(failed),
        resumed=resumed,
        graded=sum(1 for r in ordered if r.grade is not None),
        resolved=resolved,
        resolved_rate=resolved / len(instances) if instances else 0.0,
        errors=sum(1 for r in ordered if r.status == "error" or (r.grade is not None and r.grade.error)),
        empty_patches=sum(1 for r in ordered if r.patch_lines == 0),
        samples=sum(r.samples for r in ordered),
        cost=sum((Usage(cost=r.cost) for r in ordered), Usage.zero()).cost,
        wall_seconds=round(time.perf_counter() - t0, 3),
        out=str(out),
        per_instance=ordered,
    )
    slim = summary.model_dump_json(indent=2, exclude={"per_instance": {"__all__": {"grade"}}})
    write_atomic(out / "summary.json", slim + "\n")
    with contextlib.suppress(OSError):
        (out / "work").rmdir()  # only when empty: kept checkouts stay
    return summary, report


def _prepare(
    instances: list[SWEInstance], repos: Path, out: Path, resume: bool
) -> tuple[dict[str, Prediction], dict[str, InstanceResult]]:
    for inst in instances:
        _check_names(inst)
        repo_path(repos, inst)
    out.mkdir(parents=True, exist_ok=True)
    preds_file, results_file = out / "predictions.jsonl", out / "results.jsonl"
    if not resume and (preds_file.exists() or results_file.exists()):
        raise ConfigError(
            f"{out} already has a run (predictions.jsonl): pass --resume to continue it, or another --out"
        )
    done = load_predictions(preds_file) if resume and preds_file.exists() else {}
    return done, _load_results(results_file) if resume else {}


def _check_names(inst: SWEInstance) -> None:
    """Refuse an instance whose id or repo cannot name a file or folder inside ``out`` and ``repos`` (one made
    without validation, e.g. by ``model_copy``), before anything is written."""
    try:
        check_instance_id(inst.instance_id)
        owner, _, name = inst.repo.partition("/")
        check_name(owner, "repo owner")
        check_name(name, "repo name")
    except ValueError as err:
        raise ConfigError(f"instance {inst.instance_id!r}: {err}") from None


def _load_results(path: Path) -> dict[str, InstanceResult]:
    out: dict[str, InstanceResult] = {}
    if not path.exists():
        return out
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                r = InstanceResult.model_validate_json(line)
            except ValueError as err:
                raise ConfigError(f"{path}: line {number} is not a result record ({err}); delete the line") from None
            out[r.instance_id] = r
    return out


def _bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="swebench", unit="inst", dynamic_ncols=True)
