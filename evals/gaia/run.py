"""Run GAIA questions through the default pipeline: score each, record it, resume by skipping finished ids."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import re
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from mdap._outputs import mentions_disk_full, write_atomic
from mdap._redact import redact
from mdap.agents import RunResult, Sandbox
from mdap.errors import ConfigError, ModelError, invalid_settings
from mdap.jsontext import loads_json
from mdap.models import ChatModel, Price, open_model

from .loader import MINI_DATA, GaiaQuestion, find_split, load_gaia
from .pipeline import FINAL_ID, SolverActions, gaia_pipeline, gaia_task
from .results import (
    RESULTS_FILE,
    GaiaResult,
    GaiaSummary,
    append_result,
    read_results,
    summarize,
    write_outputs,
)
from .scorer import score
from .simulated import simulated_gaia_model

__all__ = ["GaiaConfig", "run_gaia", "solve_question"]

_RUN_FILE = "run.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class GaiaConfig(BaseModel):
    """Everything a GAIA run takes; the ``mdap bench gaia`` flags map one to one onto these fields."""

    model_config = {"extra": "forbid"}

    data: Path = Field(MINI_DATA, description="the dataset folder (holding 2023/); default: the shipped mini suite")
    split: str = Field("validation", min_length=1, description="the split folder under 2023/")
    levels: list[int] | None = Field(None, description="only these levels (1-3)")
    ids: list[str] | None = Field(None, description="only these task ids")
    limit: int | None = Field(None, ge=1, description="only the first N questions after the filters")
    model: str = Field("simulated", description="'simulated', 'local', or an OpenAI-compatible server URL")
    model_name: str | None = Field(None, description="the served model name (URL backends)")
    adapter: str | None = Field(None, description="LoRA adapter (served model name) the samples come from")
    price: Price | None = Field(None, description="the model's price per million tokens (None: no price set)")
    known: float = Field(1.0, ge=0.0, le=1.0, description="simulated: fraction of the questions it knows")
    error_rate: float = Field(0.0, ge=0.0, le=1.0, description="simulated: per-sample error rate")
    seed: int = Field(0, description="simulated: seed of the known subset and the errors")
    planner: Literal["llm", "fixed"] = Field("llm", description="'llm' plans with the model; 'fixed' one solve step")
    k: int = Field(2, ge=1, description="vote margin of the final answer")
    max_samples: int = Field(8, ge=1, description="sample cap of the final-answer vote")
    temperature: float = Field(0.7, ge=0.0, description="sampling temperature after each vote's first sample")
    max_tokens: int = Field(1024, ge=16, description="completion token limit per sample")
    max_tool_rounds: int = Field(4, ge=0, description="tool rounds per solver step")
    solver_actions: SolverActions = Field("code", description="how the solver acts: 'code' or 'tools'")
    concurrency: int = Field(2, ge=1, description="questions run at once")
    out: Path | None = Field(None, description="output folder (default .mdap/gaia-<split>)")
    resume: bool = Field(False, description="skip the questions already recorded in the output folder")
    progress: bool = Field(False, description="show a progress bar")

    @classmethod
    def build(cls, **values: object) -> GaiaConfig:
        """Validate ``values``, turning pydantic's errors into a ConfigError that names each bad field."""
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            raise invalid_settings("GAIA settings", err) from None

    @property
    def out_dir(self) -> Path:
        """Where the results, the submission and the summary go."""
        return self.out or Path(".mdap") / f"gaia-{self.split}"


def _safe(task_id: str) -> str:
    clean = _UNSAFE.sub("_", task_id)[:48]
    return clean if clean == task_id else f"{clean}-{hashlib.sha256(task_id.encode()).hexdigest()[:8]}"


def _trace(result: RunResult) -> str:
    if result.plan is None:
        return result.error or ""
    lines = [f"plan: {result.plan.notes}"] if result.plan.notes else []
    for s in result.plan.subtasks:
        r = result.results.get(s.id)
        outcome = "(not run)" if r is None else r.answer if r.ok else f"FAILED: {r.error}"
        shown = "" if s.id == FINAL_ID else f": {s.instruction[:300]}"
        lines.append(f"[{s.id}] {s.role}{shown}\n-> {outcome}")
    return "\n".join(lines)


async def solve_question(
    model: ChatModel,
    question: GaiaQuestion,
    cfg: GaiaConfig,
    *,
    sandbox: Sandbox | None = None,
    tracer_provider: Any = None,
) -> GaiaResult:
    """Run the default pipeline on ``question`` (its python tool in ``sandbox``, default bubblewrap) and score it;
    with an OpenTelemetry ``tracer_provider``, the run's spans go to it (see :mod:`mdap.agents.telemetry`).

    Raises:
        ModelError: the model backend failed (the question is not recorded, so a resumed run tries it again).
    """
    t0 = time.perf_counter()
    pipeline = gaia_pipeline(
        model,
        question,
        cfg.out_dir / "work" / _safe(question.task_id),
        sandbox=sandbox,
        planner=cfg.planner,
        k=cfg.k,
        max_samples=cfg.max_samples,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        max_tool_rounds=cfg.max_tool_rounds,
        actions=cfg.solver_actions,
        adapter=cfg.adapter,
    )
    if tracer_provider is not None:
        from mdap.agents.telemetry import instrument

        instrument(pipeline, tracer_provider)
    result = await pipeline.run(gaia_task(question), thread_id=question.task_id)
    transport = [r.error for r in result.results.values() if not r.ok and (r.error or "").startswith("ModelError")]
    if transport:
        raise ModelError(str(transport[0]))
    if any(not r.ok and mentions_disk_full(r.error, cfg.out_dir) for r in result.results.values()):
        raise OSError(errno.ENOSPC, "No space left on device")  # not the model's failure: not recorded
    answer = result.answer if result.ok or result.status == "partial" else None
    model_answer = (answer or "").strip()
    report = result.report
    return GaiaResult(
        task_id=question.task_id,
        level=question.level,
        question=question.question,
        file_name=question.file_name,
        model_answer=model_answer,
        ground_truth=question.final_answer,
        correct=score(model_answer, question.final_answer) if question.scored else None,
        status=result.status,
        error=redact(result.error) if result.error else result.error,
        reasoning_trace=_trace(result),
        plan_notes=result.plan.notes if result.plan is not None else "",
        subtasks=len(result.plan.subtasks) if result.plan is not None else 0,
        tool_calls=sum(r.tool_calls for r in result.results.values()),
        usage=report.usage,
        seconds=time.perf_counter() - t0,
    )


def _check_run_file(cfg: GaiaConfig, folder: Path) -> None:
    """Record what this output folder holds; a resume must be of the same split of the same data."""
    out = cfg.out_dir
    path = out / _RUN_FILE
    here = {"data": str(folder.resolve()), "split": cfg.split}
    if os.path.lexists(path) and not path.is_file():
        raise ConfigError(f"{path} is not a file; remove it, or use another --out to start a new run")
    if cfg.resume and path.is_file():
        before = _read_run_file(path)
        if {k: before.get(k) for k in here} != here:
            raise ConfigError(
                f"{out} holds a run of {before.get('split')!r} from {before.get('data')}, not {cfg.split!r} from "
                f"{here['data']}; use another --out to start a new run"
            )
    write_atomic(path, json.dumps({**here, "model": redact(cfg.model)}, indent=1) + "\n")


def _read_run_file(path: Path) -> dict[str, Any]:
    """The record of the run in an output folder (``run.json``), for a resume to check against.

    Raises:
        ConfigError: unreadable, not JSON, or not the record mdap writes (data and split).
    """
    try:
        before = loads_json(path.read_bytes())
    except OSError as err:
        raise ConfigError(f"cannot resume: {path} cannot be read ({err.strerror or err})") from None
    except ValueError as err:
        raise ConfigError(
            f"cannot resume: {path} is not the run record mdap writes (not JSON: {err}); "
            "use another --out to start a new run, or delete the folder"
        ) from None
    if not isinstance(before, dict) or not isinstance(before.get("data"), str) or not before.get("split"):
        raise ConfigError(
            f"cannot resume: {path} is not the run record mdap writes (no 'data' and 'split'); "
            "use another --out to start a new run, or delete the folder"
        )
    return before


def _simulated(cfg: GaiaConfig, questions: list[GaiaQuestion]) -> ChatModel:
    model, _ = simulated_gaia_model(questions, known=cfg.known, error_rate=cfg.error_rate, seed=cfg.seed)
    return model


async def run_gaia(
    cfg: GaiaConfig, model: ChatModel | None = None, *, sandbox: Sandbox | None = None, tracer_provider: Any = None
) -> GaiaSummary:
    """Run the selected questions (skipping recorded ones with ``resume``), write the outputs, return the summary.

    Args:
        cfg: the run's settings.
        model: use this model instead of the one ``cfg.model`` names.
        sandbox: where the python tool runs (default: :meth:`~mdap.agents.Sandbox.default`, bubblewrap).
        tracer_provider: an OpenTelemetry TracerProvider that gets each question's spans (None: no spans).

    Raises:
        ConfigError: bad data or settings, an unknown model, or an output folder that already holds results
            without ``resume``.
    """
    folder = find_split(cfg.data, cfg.split)
    questions = load_gaia(cfg.data, cfg.split, levels=cfg.levels, ids=cfg.ids)
    if not questions:
        raise ConfigError(f"no GAIA questions at level(s) {cfg.levels} in {folder}: nothing to run")
    if cfg.limit is not None:
        questions = questions[: cfg.limit]
    out = cfg.out_dir
    results_path = out / RESULTS_FILE
    out.mkdir(parents=True, exist_ok=True)
    done = read_results(results_path)
    if done and not cfg.resume:
        raise ConfigError(
            f"{results_path} already holds {len(done)} results: pass --resume to continue that run, "
            "or --out to start a new one"
        )
    _check_run_file(cfg, folder)
    finished = {r.task_id for r in done}
    todo = [q for q in questions if q.task_id not in finished]
    skipped = len(questions) - len(todo)
    t0 = time.perf_counter()
    errors: dict[str, str] = {}
    async with AsyncExitStack() as stack:
        chat: Any = None  # opened only when there is a question left to run
        if todo:
            spec = model if model is not None else cfg.model
            opening = open_model(
                spec,
                model_name=cfg.model_name,
                adapter=cfg.adapter,
                price=cfg.price,
                simulated=lambda: _simulated(cfg, questions),
            )
            chat = await stack.enter_async_context(opening)
        bar = _bar(cfg, len(questions), skipped)
        limit = asyncio.Semaphore(cfg.concurrency)

        async def one(q: GaiaQuestion) -> None:
            async with limit:
                try:
                    result = await solve_question(chat, q, cfg, sandbox=sandbox, tracer_provider=tracer_provider)
                except ModelError as err:
                    errors[q.task_id] = redact(f"ModelError: {err}")
                else:
                    # Written synchronously on purpose: one writer at a time (a few KB), so the files never interleave.
                    append_result(results_path, result)
                    done.append(result)
                    write_outputs(out, done, _summary(cfg, done, skipped, errors, t0))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"correct {sum(1 for r in done if r.correct)}/{len(done)}", refresh=False)

        try:
            await asyncio.gather(*(one(q) for q in todo))
        finally:
            if bar is not None:
                bar.close()
    summary = _summary(cfg, done, skipped, errors, t0)
    write_outputs(out, done, summary)
    return summary


def _summary(cfg: GaiaConfig, done: list[GaiaResult], skipped: int, errors: dict[str, str], t0: float) -> GaiaSummary:
    return summarize(
        done,
        split=cfg.split,
        model=redact(cfg.model),
        skipped=skipped,
        errors={task_id: redact(error) for task_id, error in errors.items()},
        wall_seconds=time.perf_counter() - t0,
        out_dir=str(cfg.out_dir),
    )


def _bar(cfg: GaiaConfig, total: int, initial: int) -> Any:
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="gaia", unit="question", file=sys.stderr, dynamic_ncols=True)
