"""The executor: the tight loop that decides a long chain of microsteps by voting.

``run -> render -> vote (sample, red-flag, parse, tally) -> verify -> apply -> trace`` for every step. It
streams its trace to disk, keeps memory O(1) in the number of steps, and checkpoints every N steps so a
killed run resumes where it stopped (at most one checkpoint interval is redone).

Where a step's vote runs is the pool's business: the default decides in-process (the voter itself is the
step runner, no per-step overhead); a :class:`~mdap.pool.RedisPool` sends each step to worker processes.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Generic, TypeVar

from mdap.errors import CheckpointError, ConfigError, VoteFailed
from mdap.models import ChatModel
from mdap.voters import Calibration, FirstToAheadByK, Voter, expected_samples, sample_ballot

from ._progress import Progress
from .checkpoint import Checkpoint, Counters, RunLock, TraceWriter, lock_path, same_file
from .microstep import Chain, Microstep
from .pool.base import Pool
from .pool.local import LocalPool
from .report import ModuleStats, RunReport

__all__ = ["Executor", "combine_reports", "run_path"]

S = TypeVar("S")
A = TypeVar("A")

_MAX_ERROR_MESSAGES = 10


class Executor(Generic[S, A]):
    """Runs a :class:`~mdap.microstep.Chain` with a voter on a model.

    Args:
        model: where samples come from (None only with a remote pool, whose workers own their models).
        voter: decides each step; a ``FirstToAheadByK(k="auto")`` is calibrated first.
        checkpoint: checkpoint file; None = no checkpoints (and no resume).
        checkpoint_every: steps between checkpoints.
        trace: JSONL trace file (one line per decided step); None = no trace.
        progress: show a progress bar on stderr.
        calibration_steps: steps sampled to estimate p when k is "auto".
        calibration_samples: samples drawn at each calibration step.
        stop_on_error: stop at the first answer the verifier rejects (the default keeps going and counts).
        pool: where each step's vote runs; None = in-process (:class:`~mdap.pool.LocalPool`).
        lock: hold the checkpoint's lock (``<checkpoint>.lock``) while running, so a second coordinator of
            the same run fails at once; False when the caller already holds it (as ``run_hanoi`` does).
    """

    def __init__(
        self,
        model: ChatModel | None,
        voter: Voter,
        *,
        checkpoint: Path | None = None,
        checkpoint_every: int = 10_000,
        trace: Path | None = None,
        progress: bool = False,
        calibration_steps: int = 100,
        calibration_samples: int = 10,
        stop_on_error: bool = False,
        pool: Pool | None = None,
        lock: bool = True,
    ) -> None:
        if checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
        if calibration_steps < 1 or calibration_samples < 2:
            raise ConfigError("calibration needs at least 1 step and 2 samples per step")
        self.model = model
        self.voter = voter
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.trace = trace
        self.progress = progress
        self.calibration_steps = calibration_steps
        self.calibration_samples = calibration_samples
        self.stop_on_error = stop_on_error
        self.pool: Pool = pool if pool is not None else LocalPool()
        self.lock = lock

    async def calibrate(self, chain: Chain[S, A], voter: FirstToAheadByK) -> Calibration:
        """Draw ``calibration_samples`` at each of the first ``calibration_steps`` states of the chain.

        The chain advances by each step's plurality answer; nothing is traced or counted in the report.
        """
        ms = chain.microstep
        if self.model is None:
            raise ConfigError("k='auto' calibrates on the executor's model: give it a model, or a fixed k")
        cal = Calibration()
        state = chain.initial
        steps = min(self.calibration_steps, chain.steps)
        bar = Progress(steps, 0, enabled=self.progress, desc="calibrate k")
        try:
            for i in range(steps):
                right = await self._calibration_step(ms, state, voter, cal)
                bar.update(i + 1, (i + 1) * self.calibration_samples)
                if right is None:
                    break  # every sample red-flagged: the chain cannot advance
                state = ms.apply(state, right)
        finally:
            bar.close()
        return cal

    async def _calibration_step(
        self, ms: Microstep[S, A], state: S, voter: FirstToAheadByK, cal: Calibration
    ) -> A | None:
        """Sample one calibration step into ``cal``; its plurality answer (None: every sample red-flagged)."""
        assert self.model is not None
        ballot = await sample_ballot(
            self.model,
            ms.render(state),
            ms.parse,
            self.calibration_samples,
            temperature=voter.temperature,
            red_flags=voter.red_flags,
            max_tokens=voter.request_max_tokens,
            adapter=voter.adapter,
            spread=voter.spread,
        )
        return cal.add(ballot)  # type: ignore[return-value]  # the plurality is one of the step's answers

    async def run(self, chain: Chain[S, A], *, resume: bool = False) -> RunReport:
        """Decide every step of ``chain`` (or continue a checkpointed run) and return the report.

        A step that cannot be decided ends the run with ``completed=False`` and the failure in the report.

        Raises:
            RunInUse: another process runs on the same checkpoint or writes the same trace.
            CheckpointError: ``resume`` with a missing, unreadable, invalid or foreign checkpoint, or a trace
                that is not the one the checkpoint wrote (or not as it left it).
            ConfigError: k="auto" and the calibration shows p <= 1/2 (voting cannot work).
        """
        if resume and self.checkpoint is None:
            raise ConfigError("resume needs a checkpoint file")
        lock = (
            RunLock(
                lock_path(self.checkpoint),
                what=f"checkpoint {self.checkpoint}",
                way_out="use another checkpoint file",
            )
            if self.checkpoint is not None and self.lock
            else nullcontext()
        )
        with lock:
            return await self._run(chain, resume)

    async def run_many(self, chains: Sequence[Chain[S, A]], *, resume: bool = False) -> RunReport:
        """Run independent ``chains`` at once through this executor's model and pool: one combined report.

        Every chain runs as :meth:`run` runs it; with more than one, each has its own checkpoint and trace
        (:func:`run_path`: ``checkpoint.json`` -> ``checkpoint.run0.json``, ...) and no progress bar. Their
        requests share the model, so one client's connection pool and concurrency cap serve them all.

        Returns:
            The summed report (:func:`combine_reports`): wall time is the batch's, steps per second the
            aggregate rate, ``modules`` holds each run's figures (``run0``, ``run1``, ...).

        Raises:
            ConfigError: no chains. Otherwise as :meth:`run`, for any of them.
        """
        if not chains:
            raise ConfigError("run_many needs at least one chain")
        if len(chains) == 1:
            return await self.run(chains[0], resume=resume)
        runs = []
        for i in range(len(chains)):
            one = copy.copy(self)
            one.checkpoint = run_path(self.checkpoint, i) if self.checkpoint is not None else None
            one.trace = run_path(self.trace, i) if self.trace is not None else None
            one.progress = False
            runs.append(one)
        t0 = time.perf_counter()
        pairs = zip(runs, chains, strict=True)
        reports = await asyncio.gather(*(one.run(chain, resume=resume) for one, chain in pairs))
        return combine_reports(reports, time.perf_counter() - t0)

    def _resume_point(self, chain: Chain[S, A]) -> tuple[Checkpoint, S]:
        """The checkpoint to continue and its state, checked against this run's trace before it is touched."""
        assert self.checkpoint is not None
        ms = chain.microstep
        ckpt = Checkpoint.load(self.checkpoint, ms.fingerprint, chain.steps)
        if ckpt.trace is None and self.trace is not None and _regular_or_new(self.trace):  # never cut a foreign file
            raise CheckpointError(
                f"the checkpoint {self.checkpoint} was written without a trace, so it cannot continue {self.trace}; "
                "resume without --trace, or rerun without --resume to start over"
            )
        if ckpt.trace is not None and (self.trace is None or not same_file(ckpt.trace, self.trace)):
            raise CheckpointError(
                f"the checkpoint {self.checkpoint} continues the trace {ckpt.trace}"
                + (f", not {self.trace}" if self.trace is not None else "")
                + f"; rerun without --resume to start over, or pass the trace this checkpoint wrote: {ckpt.trace}"
            )
        try:
            state = ms.load_state(ckpt.state)
        except (KeyError, TypeError, ValueError, IndexError) as err:  # a microstep's ConfigError is a ValueError
            raise CheckpointError(
                f"checkpoint {self.checkpoint} holds no valid state of {ms.fingerprint} ({type(err).__name__}: "
                f"{err}); rerun without --resume to start over"
            ) from err
        return ckpt, state

    async def _run(self, chain: Chain[S, A], resume: bool) -> RunReport:
        ckpt, state = self._resume_point(chain) if resume else (None, chain.initial)
        # the trace is opened (locked, checked, cut back) before any sampling, so a refusal costs nothing
        trace = TraceWriter(self.trace, resume=ckpt if ckpt and ckpt.trace else None) if self.trace else None
        try:
            return await self._decide(chain, ckpt, state, trace)
        finally:
            if trace is not None:
                trace.close()

    async def _decide(
        self, chain: Chain[S, A], ckpt: Checkpoint | None, state: S, trace: TraceWriter | None
    ) -> RunReport:
        ms = chain.microstep
        counters: dict[str, Any] = ckpt.counters.model_dump() if ckpt else {}
        start = ckpt.next_step if ckpt else 0
        run_id = ckpt.run_id if ckpt and ckpt.run_id else uuid.uuid4().hex[:16]

        voter = self.voter
        k: int | None = getattr(voter, "k", None) if isinstance(getattr(voter, "k", None), int) else None
        calibration = ckpt.calibration if ckpt else None
        if isinstance(voter, FirstToAheadByK) and voter.k == "auto":
            if ckpt and ckpt.k is not None:
                k = ckpt.k
            else:
                cal = await self.calibrate(chain, voter)
                k = cal.k_for(chain.steps, voter.target)
                calibration = cal.summary(chain.steps, voter.target)
            voter = voter.with_k(k)

        samples = int(counters.get("samples", 0))
        red_flags: dict[str, int] = dict(counters.get("red_flags", {}))
        completion_tokens = int(counters.get("completion_tokens", 0))
        prompt_tokens = int(counters.get("prompt_tokens", 0))
        contested = int(counters.get("contested_steps", 0))
        verifier = chain.verifier
        errors = int(counters.get("errors", 0))
        first_error: int | None = counters.get("first_error_step")
        messages: list[str] = list(counters.get("error_messages", []))
        prior_wall = float(counters.get("wall_seconds", 0.0))

        # a trace on a device (/dev/null, a pipe) is written but not recorded: a resume would have nothing to verify
        recorded = trace is not None and trace.regular
        trace_path = str(self.trace.resolve()) if self.trace and recorded else None
        bar = Progress(chain.steps, start, enabled=self.progress, desc=ms.fingerprint)
        t0 = time.perf_counter()
        session_samples = 0
        failure: VoteFailed | None = None

        def snapshot(next_step: int) -> dict[str, Any]:
            return {
                "samples": samples,
                "red_flags": red_flags,
                "completion_tokens": completion_tokens,
                "prompt_tokens": prompt_tokens,
                "contested_steps": contested,
                "errors": errors,
                "first_error_step": first_error,
                "error_messages": messages,
                "wall_seconds": prior_wall + time.perf_counter() - t0,
            }

        def save(next_step: int) -> None:
            length = trace.sync() if trace is not None else 0
            if self.checkpoint is not None:
                Checkpoint(
                    task=ms.fingerprint,
                    next_step=next_step,
                    state=ms.dump_state(state),
                    k=k,
                    calibration=calibration,
                    counters=Counters.model_validate(snapshot(next_step)),
                    trace=trace_path,
                    trace_bytes=length if recorded else None,
                    trace_tail=trace.tail() if trace and recorded else None,
                    run_id=run_id,
                ).save(self.checkpoint)
            settled = getattr(decide, "checkpointed", None)  # a pool may drop what a resume no longer needs
            if settled is not None:
                settled(next_step)

        every = self.checkpoint_every
        render, apply = ms.render, ms.apply
        step = start
        try:
            async with self.pool.session(chain, voter, self.model, run_id) as decide:
                for step in range(start, chain.steps):
                    try:
                        d = await decide(step, render(state))
                    except VoteFailed as err:
                        failure = err.with_step(step)
                        samples += err.samples
                        session_samples += err.samples
                        for kind, c in err.red_flags.items():
                            red_flags[kind] = red_flags.get(kind, 0) + c
                        break
                    samples += d.samples
                    session_samples += d.samples
                    completion_tokens += d.completion_tokens
                    prompt_tokens += d.prompt_tokens
                    if d.red_flags:
                        for kind, c in d.red_flags.items():
                            red_flags[kind] = red_flags.get(kind, 0) + c
                    if len(d.votes) > 1:
                        contested += 1
                    if verifier is not None:
                        problem = verifier(step, state, d.answer)
                        if problem is not None:
                            errors += 1
                            if first_error is None:
                                first_error = step
                            if len(messages) < _MAX_ERROR_MESSAGES:
                                messages.append(f"step {step}: {problem}")
                    state = apply(state, d.answer)
                    if trace is not None:
                        trace.write(
                            {
                                "step": step,
                                "answer": ms.dump_answer(d.answer),
                                "samples": d.samples,
                                "votes": d.votes,
                                "red_flags": d.red_flags,
                            }
                        )
                    done = step + 1
                    if done % every == 0:
                        save(done)
                    if done & 1023 == 0:
                        bar.update(done, session_samples)
                    if self.stop_on_error and first_error == step:
                        step = done
                        break
                else:
                    step = chain.steps
                save(step)
        finally:
            bar.update(step, session_samples)
            bar.close()

        final = snapshot(step)
        p = (calibration or {}).get("p")
        return RunReport(
            task=ms.fingerprint,
            total_steps=chain.steps,
            steps=step,
            completed=step == chain.steps,
            errors=errors if verifier is not None else None,
            first_error_step=first_error,
            error_messages=messages,
            samples=samples,
            red_flags=red_flags,
            contested_steps=contested,
            completion_tokens=completion_tokens,
            prompt_tokens=prompt_tokens,
            wall_seconds=final["wall_seconds"],
            k=k,
            calibration=calibration,
            expected_samples_per_step=expected_samples(p, k) if p and k and p > 0.5 else None,
            resumed_from=start if ckpt else None,
            failure=str(failure) if failure else None,
            failure_tally=failure.tally if failure else None,
        )


def _regular_or_new(path: Path) -> bool:
    """Whether ``path`` is a regular file or does not exist yet (not a device such as /dev/null)."""
    return not path.exists() or path.is_file()


def run_path(path: Path, run: int) -> Path:
    """The file of run ``run`` of a batch (:meth:`Executor.run_many`): ``trace.jsonl`` -> ``trace.run0.jsonl``."""
    return path.with_name(f"{path.stem}.run{run}{path.suffix}")


def combine_reports(reports: Sequence[RunReport], wall_seconds: float) -> RunReport:
    """One report for runs made at the same time: counts summed, ``wall_seconds`` the batch's, each run's
    figures under ``modules["run<i>"]``, errors and failures prefixed with their run."""
    first = reports[0]
    red_flags: dict[str, int] = {}
    for r in reports:
        for kind, c in r.red_flags.items():
            red_flags[kind] = red_flags.get(kind, 0) + c
    failures = [f"run {i}: {r.failure}" for i, r in enumerate(reports) if r.failure]
    failed = next((r for r in reports if r.failure_tally), None)
    errors = [r.errors for r in reports if r.errors is not None]
    ks = {r.k for r in reports}
    expected = {r.expected_samples_per_step for r in reports}
    return RunReport(
        task=first.task if all(r.task == first.task for r in reports) else ",".join(r.task for r in reports),
        total_steps=sum(r.total_steps for r in reports),
        steps=sum(r.steps for r in reports),
        completed=all(r.completed for r in reports),
        errors=sum(errors) if errors else None,
        first_error_step=next((r.first_error_step for r in reports if r.first_error_step is not None), None),
        error_messages=[f"run {i}: {m}" for i, r in enumerate(reports) for m in r.error_messages][:_MAX_ERROR_MESSAGES],
        samples=sum(r.samples for r in reports),
        red_flags=red_flags,
        contested_steps=sum(r.contested_steps for r in reports),
        completion_tokens=sum(r.completion_tokens for r in reports),
        prompt_tokens=sum(r.prompt_tokens for r in reports),
        wall_seconds=wall_seconds,
        k=ks.pop() if len(ks) == 1 else None,
        calibration=first.calibration,
        expected_samples_per_step=expected.pop() if len(expected) == 1 else None,
        cost=sum(r.cost for r in reports),
        model_seconds=sum(r.model_seconds for r in reports),
        modules={
            f"run{i}": ModuleStats(**r.model_dump(include=set(ModuleStats.model_fields))) for i, r in enumerate(reports)
        },
        failure="; ".join(failures) or None,
        failure_tally=failed.failure_tally if failed else None,
    )
