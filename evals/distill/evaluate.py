"""What voting needs, measured on held-out steps: per-state p, its spread, collision rate, k_min and cost.

Each held-out example is a prompt with its known right answer. A fixed number of samples is drawn per state
(no stopping rule, so per-state p is unbiased), optionally spread over the microstep's answer-preserving views
(decorrelated sampling). The result says whether voting can work -- every state above p = 1/2 and wrong
samples that disagree -- and what k and cost it would take for a run of ``steps`` steps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from mdap._progress import Progress
from mdap.errors import ConfigError, RedFlag
from mdap.models import ChatModel
from mdap.models.lora_data import TrainingExample
from mdap.voters import NO_RED_FLAGS, Calibration, RedFlagPolicy, Spread, expected_samples, k_min, sample_ballot

from ..hanoi.task import HanoiStep

__all__ = ["HeldoutReport", "StateResult", "evaluate_heldout", "hanoi_parser"]


def hanoi_parser(example: TrainingExample) -> Callable[[str], Any]:
    """The strict Hanoi parser for an example's number of disks (``meta["disks"]``).

    Raises:
        ConfigError: the example does not say how many disks it has.
    """
    disks = example.meta.get("disks")
    if not isinstance(disks, int):
        raise ConfigError(f"held-out example {example.id} has no meta.disks; make it with `mdap adapters dataset`")
    return HanoiStep(disks).parse


class StateResult(BaseModel):
    """One held-out state: right votes, valid votes, the wrong answers' vote counts, red flags."""

    id: str
    group: str
    p: float | None
    right: int
    valid: int
    wrong: list[int]
    red_flagged: int
    meta: dict[str, Any] = {}


class HeldoutReport(BaseModel):
    """The reliability of one model (base or adapter) on held-out states."""

    model: str
    decorrelated: bool
    states: int
    samples_per_state: int
    temperature: float
    mean_p: float
    pooled_p: float
    fraction_above_half: float
    collision_rate: float | None
    red_flag_rate: float
    p_quantiles: dict[str, float]
    p_histogram: dict[str, int]
    warnings: list[str]
    steps: int
    target: float
    k_min: int | None
    expected_samples_per_step: float | None
    expected_samples_run: float | None
    seconds: float
    per_state: list[StateResult]

    def headline(self) -> dict[str, object]:
        """The figures that decide whether voting works (for a table)."""
        return {
            "model": self.model + (" +decorrelated" if self.decorrelated else ""),
            "states": self.states,
            "mean_p": round(self.mean_p, 3),
            "p>0.5": round(self.fraction_above_half, 3),
            "min_p": self.p_quantiles.get("min"),
            "collision": None if self.collision_rate is None else round(self.collision_rate, 3),
            "red_flags": round(self.red_flag_rate, 3),
            "k_min": self.k_min,
            "samples/step": None
            if self.expected_samples_per_step is None
            else round(self.expected_samples_per_step, 2),
        }


async def evaluate_heldout(
    model: ChatModel,
    examples: Sequence[TrainingExample],
    parser_for: Callable[[TrainingExample], Callable[[str], Any]],
    *,
    name: str = "base",
    adapter: str | None = None,
    samples: int = 20,
    temperature: float = 0.7,
    max_tokens: int | None = 96,
    red_flags: RedFlagPolicy = NO_RED_FLAGS,
    spread: Spread | None = None,
    concurrency: int = 4,
    steps: int = 63,
    target: float = 0.95,
    progress: bool = False,
) -> HeldoutReport:
    """Draw ``samples`` per held-out state and report per-state p, collision rate, k_min and expected cost.

    Args:
        model: where samples come from (e.g. a started :class:`~mdap.models.LocalModel`).
        examples: held-out prompts with their right answers (``completion``).
        parser_for: the microstep's strict parser for an example (a sample it rejects is red-flagged, not wrong).
        name: how the report names the model; adapter: the adapter to sample (None = base).
        spread: decorrelated sampling over answer-preserving views (None = the original prompt only).
        concurrency: states sampled at once.
        steps, target: the run size and success target k_min and the expected cost are computed for.
        progress: show a progress bar (states done, samples/s) on stderr.

    Raises:
        ConfigError: no examples, fewer than 2 samples, or an example whose answer does not parse.
    """
    if not examples or samples < 2:
        raise ConfigError("evaluation needs at least one held-out example and 2 samples per state")
    refs = []
    for ex in examples:
        try:
            refs.append(parser_for(ex)(ex.completion))
        except RedFlag as err:
            raise ConfigError(f"held-out example {ex.id}: its answer does not parse ({err.detail})") from None
    gate = asyncio.Semaphore(concurrency)
    t0 = time.perf_counter()
    label = name + (" +decorrelated" if spread is not None else "")
    bar = Progress(len(examples), 0, enabled=progress, desc=f"eval {label}", unit="state")
    done = 0

    async def one(ex: TrainingExample) -> Any:
        nonlocal done
        async with gate:
            ballot = await sample_ballot(
                model, ex.chat, parser_for(ex), samples, temperature=temperature, red_flags=red_flags,
                max_tokens=max_tokens, adapter=adapter, spread=spread,
            )  # fmt: skip
        done += 1
        bar.update(done, done * samples)
        return ballot

    try:
        ballots = await asyncio.gather(*(one(ex) for ex in examples))
    finally:
        bar.close()
    cal = Calibration()
    per_state = []
    for ex, ref, ballot in zip(examples, refs, ballots, strict=True):
        cal.add(ballot, ref)
        right = ballot.tally.get(ref, 0)
        valid = sum(ballot.tally.values())
        per_state.append(
            StateResult(
                id=ex.id,
                group=ex.group,
                p=right / samples,
                right=right,
                valid=valid,
                wrong=sorted((c for a, c in ballot.tally.items() if a != ref), reverse=True),
                red_flagged=sum(ballot.flags.values()),
                meta=ex.meta,
            )
        )
    # p per state counts red-flagged samples as not right: a red-flagged sample is redrawn, but a state that
    # only yields red flags cannot be voted at all.
    ps = [s.p or 0.0 for s in per_state]
    pooled = sum(s.right for s in per_state) / (samples * len(per_state))
    k = expected = None
    if pooled > 0.5:
        k = k_min(pooled, steps, target)
        expected = expected_samples(pooled, k)
    summary = Calibration(per_step=[(st.right, samples) for st in per_state])  # red flags count as not right
    return HeldoutReport(
        model=name,
        decorrelated=spread is not None,
        states=len(per_state),
        samples_per_state=samples,
        temperature=temperature,
        mean_p=sum(ps) / len(ps),
        pooled_p=pooled,
        fraction_above_half=sum(p > 0.5 for p in ps) / len(ps),
        collision_rate=cal.collision_rate,
        red_flag_rate=cal.red_flag_rate,
        p_quantiles=summary.p_quantiles(),
        p_histogram=summary.p_histogram(),
        warnings=summary.warnings() + ([] if cal.collision_rate is None else _collision_warning(cal)),
        steps=steps,
        target=target,
        k_min=k,
        expected_samples_per_step=expected,
        expected_samples_run=None if expected is None else expected * steps,
        seconds=round(time.perf_counter() - t0, 2),
        per_state=per_state,
    )


def _collision_warning(cal: Calibration) -> list[str]:
    return [w for w in cal.warnings() if "collision" in w]
