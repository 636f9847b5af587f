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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from mdap.errors import CheckpointError, ConfigError, VoteFailed
from mdap.models import ChatModel
from mdap.usage import Usage
from mdap.voters import Calibration, Decision, FirstToAheadByK, Voter, expected_samples, sample_ballot

from ._progress import Progress
from .checkpoint import Checkpoint, Counters, RunLock, TraceWriter, lock_path, same_file
from .microstep import Chain, Microstep
from .pool.base import Pool, PoolSession
from .pool.local import LocalPool
from .report import MAX_ERROR_MESSAGES, RunReport, combine_reports

__all__ = ["Executor", "run_path"]

S = TypeVar("S")
A = TypeVar("A")


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
            The summed report (:func:`~mdap.report.combine_reports`): wall time is the batch's, steps per second the
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
        """Vote every step left, on one session of the pool; the report of the run so far."""
        voter, k, calibration = await self._margin(chain, ckpt)
        run = _Run(self, chain, ckpt, state, trace, k, calibration)
        async with self.pool.session(chain, voter, self.model, run.run_id) as session:
            try:
                await run.loop(session)
            finally:
                run.close()
        return run.report()

    async def _margin(
        self, chain: Chain[S, A], ckpt: Checkpoint | None
    ) -> tuple[Voter, int | None, dict[str, Any] | None]:
        """The voter with its margin k: fixed, the checkpoint's, or calibrated now (``k="auto"``)."""
        voter = self.voter
        k = getattr(voter, "k", None)
        k = k if isinstance(k, int) else None
        calibration = ckpt.calibration if ckpt else None
        if isinstance(voter, FirstToAheadByK) and voter.k == "auto":
            if ckpt and ckpt.k is not None:
                k = ckpt.k
            else:
                cal = await self.calibrate(chain, voter)
                k = cal.k_for(chain.steps, voter.target)
                calibration = cal.summary(chain.steps, voter.target)
            voter = voter.with_k(k)
        return voter, k, calibration


@dataclass(slots=True)
class _Tally:
    """The counters of a chain run: what a checkpoint saves and the report shows.

    Attributes:
        usage: what the decided (and the last, failed) steps' samples cost.
        contested: steps where some valid vote went to another answer.
        verifier_errors: decided answers the verifier rejected.
        first_error: the step of the first rejection.
        messages: the first few verifier messages.
        prior_wall: wall seconds of the sessions before this one.
    """

    usage: Usage = field(default_factory=Usage.zero)
    contested: int = 0
    verifier_errors: int = 0
    first_error: int | None = None
    messages: list[str] = field(default_factory=list)
    prior_wall: float = 0.0

    @classmethod
    def of(cls, c: Counters) -> _Tally:
        """The counters a checkpoint saved."""
        usage = Usage(c.samples, dict(c.red_flags), c.completion_tokens, c.prompt_tokens, c.cost)
        return cls(usage, c.contested_steps, c.errors, c.first_error_step, list(c.error_messages), c.wall_seconds)

    def counters(self, wall_seconds: float) -> Counters:
        """The checkpoint's form, with the run's wall time so far."""
        u = self.usage
        return Counters(
            samples=u.samples,
            red_flags=dict(u.red_flags),
            completion_tokens=u.completion_tokens,
            prompt_tokens=u.prompt_tokens,
            cost=u.cost,
            contested_steps=self.contested,
            errors=self.verifier_errors,
            first_error_step=self.first_error,
            error_messages=list(self.messages),
            wall_seconds=wall_seconds,
        )

    def reject(self, step: int, problem: str) -> None:
        """Count the verifier's rejection of step ``step``."""
        self.verifier_errors += 1
        if self.first_error is None:
            self.first_error = step
        if len(self.messages) < MAX_ERROR_MESSAGES:
            self.messages.append(f"step {step}: {problem}")


class _Run(Generic[S, A]):
    """One session of a chain run: ``render -> decide -> verify -> apply -> trace`` per step over one tally,
    a checkpoint every ``checkpoint_every`` steps, and the report at the end."""

    def __init__(
        self,
        ex: Executor[S, A],
        chain: Chain[S, A],
        ckpt: Checkpoint | None,
        state: S,
        trace: TraceWriter | None,
        k: int | None,
        calibration: dict[str, Any] | None,
    ) -> None:
        self.ex = ex
        self.chain = chain
        self.state = state
        self.trace = trace
        self.k = k
        self.calibration = calibration
        self.tally = _Tally.of(ckpt.counters) if ckpt else _Tally()
        self.start = self.step = ckpt.next_step if ckpt else 0
        self.resumed = ckpt is not None
        self.run_id = ckpt.run_id if ckpt and ckpt.run_id else uuid.uuid4().hex[:16]
        # a trace on a device (/dev/null, a pipe) is written but not recorded: a resume would have nothing to verify
        self.recorded = trace is not None and trace.regular
        self.trace_path = str(ex.trace.resolve()) if ex.trace and self.recorded else None
        self.failure: VoteFailed | None = None
        self.prior_samples = self.tally.usage.samples
        self.bar = Progress(chain.steps, self.start, enabled=ex.progress, desc=chain.microstep.fingerprint)
        self.t0 = time.perf_counter()

    async def loop(self, session: PoolSession) -> None:
        """Decide steps until the chain ends, a vote fails or (``stop_on_error``) the verifier rejects one."""
        ms, chain, tally, trace = self.chain.microstep, self.chain, self.tally, self.trace
        render, apply, decide, verifier = ms.render, ms.apply, session.decide, chain.verifier
        every, stop_on_error, bar = self.ex.checkpoint_every, self.ex.stop_on_error, self.bar
        state = self.state
        for step in range(self.start, chain.steps):
            try:
                d = await decide(step, render(state))
            except VoteFailed as err:
                self.failure = err.with_step(step)
                tally.usage += err.usage
                break
            tally.usage += d.usage
            if len(d.votes) > 1:
                tally.contested += 1
            problem = verifier(step, state, d.answer) if verifier is not None else None
            if problem is not None:
                tally.reject(step, problem)
            self.state = state = apply(state, d.answer)
            if trace is not None:
                trace.write(_record(step, ms.dump_answer(d.answer), d))
            self.step = done = step + 1
            if done % every == 0:
                self.save(session)
            if done & 1023 == 0:
                bar.update(done, tally.usage.samples - self.prior_samples)
            if problem is not None and stop_on_error:
                break
        self.save(session)

    def save(self, session: PoolSession) -> None:
        """Sync the trace, checkpoint at the current step (when checkpointing) and tell the session."""
        trace, ex = self.trace, self.ex
        length = trace.sync() if trace is not None else 0
        if ex.checkpoint is not None:
            Checkpoint(
                task=self.chain.microstep.fingerprint,
                next_step=self.step,
                state=self.chain.microstep.dump_state(self.state),
                k=self.k,
                calibration=self.calibration,
                counters=self.tally.counters(self.wall_seconds()),
                trace=self.trace_path,
                trace_bytes=length if self.recorded else None,
                trace_tail=trace.tail() if trace and self.recorded else None,
                run_id=self.run_id,
            ).save(ex.checkpoint)
        session.checkpointed(self.step)

    def wall_seconds(self) -> float:
        """Wall time of the run: earlier sessions and this one so far."""
        return self.tally.prior_wall + time.perf_counter() - self.t0

    def close(self) -> None:
        """Show the final position and close the progress bar."""
        self.bar.update(self.step, self.tally.usage.samples - self.prior_samples)
        self.bar.close()

    def report(self) -> RunReport:
        """The report of the run so far."""
        chain, tally, k, failure = self.chain, self.tally, self.k, self.failure
        p = (self.calibration or {}).get("p")
        return RunReport(
            task=chain.microstep.fingerprint,
            total_steps=chain.steps,
            steps=self.step,
            completed=self.step == chain.steps,
            verifier_errors=tally.verifier_errors if chain.verifier is not None else None,
            first_error_step=tally.first_error,
            error_messages=tally.messages,
            usage=tally.usage,
            contested_steps=tally.contested,
            wall_seconds=self.wall_seconds(),
            k=k,
            calibration=self.calibration,
            expected_samples_per_step=expected_samples(p, k) if p and k and p > 0.5 else None,
            resumed_from=self.start if self.resumed else None,
            failure=str(failure) if failure else None,
            failure_tally=failure.tally if failure else None,
        )


def _record(step: int, answer: Any, d: Decision[Any]) -> dict[str, Any]:
    """The trace line of a decided step."""
    u = d.usage
    return {"step": step, "answer": answer, "samples": u.samples, "votes": d.votes, "red_flags": u.red_flags}


def _regular_or_new(path: Path) -> bool:
    """Whether ``path`` is a regular file or does not exist yet (not a device such as /dev/null)."""
    return not path.exists() or path.is_file()


def run_path(path: Path, run: int) -> Path:
    """The file of run ``run`` of a batch (:meth:`Executor.run_many`): ``trace.jsonl`` -> ``trace.run0.jsonl``."""
    return path.with_name(f"{path.stem}.run{run}{path.suffix}")
