"""Reliability diagnostics (per-step p, spread, collision rate) and decorrelated sampling over prompt views."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from mdap.errors import ConfigError
from mdap.evals.hanoi import HanoiStep, hanoi_oracle
from mdap.evals.hanoi.solver import apply_move, legal_moves, strategy_move
from mdap.evals.hanoi.task import (
    PegRotation,
    format_answer,
    peg_rotations,
    rotate_answer,
    rotate_state,
    state_from_prompt,
)
from mdap.models import Sample
from mdap.types import Message
from mdap.voters import (
    IDENTITY,
    NO_RED_FLAGS,
    Calibration,
    FirstToAheadByK,
    Spread,
    sample_ballot,
    trace_calibration,
)
from mdap.voters.transforms import spread_plan


def test_collision_rate_counts_agreeing_wrong_pairs() -> None:
    cal = Calibration()
    cal.add_counts(5, [3, 1])  # 4 wrong samples: 6 pairs, 3 of them agree (the three alike)
    cal.add_counts(2, [1, 1])  # 2 wrong samples that disagree: 1 pair, 0 agree
    assert (cal.wrong_pairs, cal.agreeing_pairs) == (7, 3)
    assert cal.collision_rate == pytest.approx(3 / 7)
    assert cal.step_ps == pytest.approx([5 / 9, 2 / 4])
    assert cal.fraction_below_half == 0.5


@pytest.mark.parametrize("wrong_answers", [1, 2, 4])
def test_collision_rate_estimates_the_chance_two_wrong_samples_agree(wrong_answers: int) -> None:
    """Wrong samples spread uniformly over m answers agree with probability 1/m."""
    rng = random.Random(wrong_answers)
    cal = Calibration()
    for _ in range(400):
        tally = [0] * wrong_answers
        right = 0
        for _ in range(20):
            if rng.random() < 0.6:
                right += 1
            else:
                tally[rng.randrange(wrong_answers)] += 1
        cal.add_counts(right, [c for c in tally if c])
    assert cal.collision_rate == pytest.approx(1 / wrong_answers, abs=0.03)
    assert cal.estimate.p == pytest.approx(0.6, abs=0.02)


def test_p_spread_and_warnings_say_when_voting_cannot_work() -> None:
    cal = Calibration()
    for right, wrong in [(20, []), (19, [1]), (10, [10]), (2, [18]), (15, [5])]:
        cal.add_counts(right, wrong)
    q = cal.p_quantiles()
    assert (q["min"], q["q50"], q["max"]) == (0.1, 0.75, 1.0)
    assert cal.p_histogram() == {"0-0.25": 1, "0.25-0.5": 0, "0.5-0.75": 1, "0.75-0.9": 1, "0.9-1": 2}
    warnings = cal.warnings()
    assert any("2 of 5 steps have p <= 1/2" in w for w in warnings)
    assert any("collision rate" in w for w in warnings)  # every wrong sample of a step agreed
    summary = cal.summary(steps=63)
    assert summary["warnings"] == warnings and summary["p_quantiles"] == q
    assert not Calibration(per_step=[(9, 10)]).warnings()


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ConfigError, match="vote counts must be >= 0"):
        Calibration().add_counts(-1, [])


def test_trace_calibration_reads_votes_and_red_flags(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    lines = [
        {"step": 0, "answer": 1, "samples": 3, "votes": [3], "red_flags": {}},
        {"step": 1, "answer": 2, "samples": 8, "votes": [4, 2, 1], "red_flags": {"parse": 1}},
    ]
    trace.write_text("".join(json.dumps(x) + "\n" for x in lines))
    cal = trace_calibration(trace)
    assert cal.per_step == [(3, 3), (4, 7)]
    assert (cal.samples, cal.red_flagged, cal.wrong_pairs, cal.agreeing_pairs) == (11, 1, 3, 1)
    trace.write_text('{"step": 0}\n')
    with pytest.raises(ConfigError, match=r"t\.jsonl:1 is not a trace record"):
        trace_calibration(trace)


def _states(disks: int) -> list[object]:
    ms = HanoiStep(disks)
    state, out = ms.initial(), []
    for _ in range(ms.steps):
        out.append(state)
        move = strategy_move(state)
        state = ms.apply(state, ms.parse(format_answer(move, apply_move(state.pegs, move))))
    return out


@pytest.mark.parametrize("disks", [3, 4, 5])
def test_peg_rotation_round_trip_is_identity(disks: int) -> None:
    ms = HanoiStep(disks)
    for state in _states(disks):
        messages = ms.render(state)  # type: ignore[arg-type]
        right = ms.parse(hanoi_oracle(messages))
        for view in peg_rotations():
            viewed = view.view(messages)
            assert viewed[0] == messages[0]  # the system prompt is untouched
            assert state_from_prompt(viewed) == rotate_state(state, view.shift)  # type: ignore[arg-type]
            # the strategy's answer to the relabelled prompt, mapped back, is the original answer
            assert view.back(ms.parse(hanoi_oracle(viewed))) == right
            assert view.back(rotate_answer(right, view.shift)) == right
            assert rotate_state(rotate_state(state, view.shift), -view.shift % 3) == state  # type: ignore[arg-type]
    assert [t.name for t in ms.transforms] == ["rotate+0", "rotate+1", "rotate+2"]
    with pytest.raises(ConfigError, match="shifts by 0, 1 or 2"):
        PegRotation(3)


def test_spread_plan_is_round_robin_from_where_the_step_left_off() -> None:
    assert spread_plan(3, 5, 0) == {0: 2, 1: 2, 2: 1}
    assert spread_plan(3, 2, 5) == {2: 1, 0: 1}
    assert Spread((IDENTITY,), ("a", "b")).sources(None) == [(0, "a"), (0, "b")]
    with pytest.raises(ConfigError, match="view names must be unique"):
        Spread((IDENTITY, IDENTITY))


class SurfaceModel:
    """Right with probability ``p``; otherwise always the same wrong move *as the prompt labels it*: the first
    other legal move in peg order. Its errors depend on the surface form, so without views they all agree."""

    def __init__(self, p: float, seed: int = 0) -> None:
        self.p = p
        self.rng = random.Random(seed)
        self.adapters: list[str | None] = []

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
    ) -> list[Sample]:
        state = state_from_prompt(messages)
        right = strategy_move(state)
        wrong = next(m for m in legal_moves(state.pegs) if m != right)
        out = []
        for _ in range(n):
            move = right if self.rng.random() < self.p else wrong
            out.append(Sample(format_answer(move, apply_move(state.pegs, move)), 30, adapter=adapter))
            self.adapters.append(adapter)
        return out


async def test_spreading_samples_over_rotations_decorrelates_surface_errors() -> None:
    ms = HanoiStep(4)
    views = Spread(ms.transforms)
    plain, spread = Calibration(), Calibration()
    for i, state in enumerate(_states(4)):
        messages = ms.render(state)  # type: ignore[arg-type]
        right = ms.parse(hanoi_oracle(messages))
        for cal, sp in ((plain, None), (spread, views)):
            ballot = await sample_ballot(
                SurfaceModel(0.5, seed=i), messages, ms.parse, 12, temperature=0.7, red_flags=NO_RED_FLAGS, spread=sp
            )
            cal.add(ballot, right)
    assert plain.collision_rate == 1.0
    assert spread.collision_rate is not None and spread.collision_rate < 0.75
    assert plain.estimate.p == pytest.approx(0.5, abs=0.06) and spread.estimate.p == pytest.approx(0.5, abs=0.06)


async def test_voter_with_spread_decides_in_the_original_frame_over_views_and_adapters() -> None:
    ms = HanoiStep(3)
    state = _states(3)[2]
    messages = ms.render(state)  # type: ignore[arg-type]
    model = SurfaceModel(1.0)
    voter = FirstToAheadByK(k=4, spread=Spread(ms.transforms, ("a", "b")))
    d = await voter.decide(model, messages, ms.parse)
    assert d.answer == ms.parse(hanoi_oracle(messages))
    assert d.votes == [4] and d.usage.samples == 4
    assert sorted(a or "" for a in model.adapters) == ["a", "a", "b", "b"]
