"""Voting: first-to-ahead-by-k and majority, with red flags, ties, caps and correlated errors."""

from __future__ import annotations

import pytest

from mdap.errors import ConfigError, RedFlag, VoteFailed
from mdap.models import ScriptedModel, SimulatedModel
from mdap.types import Message
from mdap.voters import FirstToAheadByK, Majority, RedFlagPolicy, step_error

PROMPT: list[Message] = [{"role": "user", "content": "What is 6 * 7? Answer with the number only."}]


def parse_int(text: str) -> int:
    """A strict parser: digits only."""
    text = text.strip()
    if not text.isdigit():
        raise RedFlag("parse", f"not a number: {text!r}")
    return int(text)


async def test_unanimous_first_round_decides_with_k_samples_in_one_request() -> None:
    model = ScriptedModel(["42", "42", "42"])
    d = await FirstToAheadByK(k=3).decide(model, PROMPT, parse_int)
    assert d.answer == 42
    assert d.usage.samples == 3
    assert d.votes == [3]
    assert [c.n for c in model.calls] == [3]


async def test_votes_compare_parsed_answers_not_raw_text() -> None:
    model = ScriptedModel(["42", " 42\n", "042"])
    d = await FirstToAheadByK(k=3).decide(model, PROMPT, parse_int)
    assert d.answer == 42 and d.votes == [3]


async def test_first_sample_temperature_is_separate_and_concurrent() -> None:
    model = ScriptedModel(["42"] * 3, latency_s=0.05)
    voter = FirstToAheadByK(k=3, temperature=0.1, first_temperature=0.0)
    d = await voter.decide(model, PROMPT, parse_int)
    assert d.answer == 42
    assert sorted((c.n, c.temperature) for c in model.calls) == [(1, 0.0), (2, 0.1)]
    assert model.max_in_flight == 2  # both requests of the first round were in flight together


async def test_ties_keep_drawing_only_what_can_decide() -> None:
    # k=2: (1, 2) tie -> draw 2 -> (1, 2) tie again -> draw 2 -> (1, 1): 1 leads 4 to 2
    model = ScriptedModel(["1", "2", "1", "2", "1", "1"])
    d = await FirstToAheadByK(k=2).decide(model, PROMPT, parse_int)
    assert d.answer == 1
    assert d.votes == [4, 2]
    assert d.usage.samples == 6
    assert [c.n for c in model.calls] == [2, 2, 2]


async def test_a_lead_shrinks_the_next_round() -> None:
    # k=3: 5,5,7 -> lead 1 -> draw 2 -> 5,5 -> lead 3
    model = ScriptedModel(["5", "5", "7", "5", "5"])
    d = await FirstToAheadByK(k=3).decide(model, PROMPT, parse_int)
    assert (d.answer, d.votes, d.usage.samples) == (5, [4, 1], 5)
    assert [c.n for c in model.calls] == [3, 2]


async def test_red_flagged_samples_are_discarded_and_redrawn() -> None:
    model = ScriptedModel(
        [
            "I think it is 42",  # parse failure
            ("42", "length", 5),  # cut off for length
            ("42", "stop", 900),  # over the token limit
            "42",
            "42",
            "42",
        ]
    )
    voter = FirstToAheadByK(k=3, red_flags=RedFlagPolicy(max_completion_tokens=750))
    d = await voter.decide(model, PROMPT, parse_int)
    assert d.answer == 42
    assert d.usage.samples == 6
    assert d.votes == [3]
    assert d.usage.red_flags == {"parse": 1, "truncated": 1, "too_long": 1}


async def test_cap_reached_raises_vote_failed_with_the_tally() -> None:
    model = ScriptedModel(["1", "2"] * 10 + ["oops"] * 2)
    voter = FirstToAheadByK(k=2, max_samples=10)
    with pytest.raises(VoteFailed) as info:
        await voter.decide(model, PROMPT, parse_int)
    err = info.value
    assert err.samples == 10
    assert err.tally == {"1": 5, "2": 5}
    assert "cap 10" in str(err)


async def test_cap_counts_red_flags_too() -> None:
    model = ScriptedModel(["nope"] * 6)
    with pytest.raises(VoteFailed) as info:
        await FirstToAheadByK(k=2, max_samples=6).decide(model, PROMPT, parse_int)
    assert info.value.red_flags == {"parse": 6}
    assert info.value.tally == {}
    assert model.remaining == 0


async def test_auto_k_must_be_resolved_before_voting() -> None:
    with pytest.raises(ConfigError, match="auto"):
        await FirstToAheadByK(k="auto").decide(ScriptedModel(["1"]), PROMPT, parse_int)
    assert FirstToAheadByK(k="auto").with_k(4).k == 4


@pytest.mark.parametrize("bad", [0, -1, "three", 2.5, True])
def test_bad_k_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="k must be"):
        FirstToAheadByK(k=bad)  # type: ignore[arg-type]


def test_cap_below_k_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_samples"):
        FirstToAheadByK(k=5, max_samples=4)


async def _decided_error_rate(correlation: float, votes: int, p: float, k: int) -> float:
    model = SimulatedModel(lambda m: "42", error_rate=1 - p, correlation=correlation, seed=7)
    voter = FirstToAheadByK(k=k, max_samples=1000)
    wrong = 0
    for i in range(votes):
        prompt: list[Message] = [{"role": "user", "content": f"question {i}"}]
        wrong += (await voter.decide(model, prompt, parse_int)).answer != 42
    return wrong / votes


async def test_correlated_errors_defeat_voting_as_the_math_predicts() -> None:
    p, k, votes = 0.7, 2, 3000
    correlated = await _decided_error_rate(1.0, votes, p, k)
    independent = await _decided_error_rate(0.0, votes, p, k)
    theory = step_error(p, k)  # the two-answer race is exactly the fully correlated case
    sigma = (theory * (1 - theory) / votes) ** 0.5
    assert abs(correlated - theory) < 4 * sigma
    assert independent < correlated / 3  # scattered wrong answers rarely win


async def test_majority_takes_the_plurality_and_redraws_red_flags() -> None:
    model = ScriptedModel(["3", "bad", "4", "3", "4", "3"])
    d = await Majority(n=5).decide(model, PROMPT, parse_int)
    assert d.answer == 3
    assert d.votes == [3, 2]
    assert d.usage.red_flags == {"parse": 1}
    assert [c.n for c in model.calls] == [5, 1]


async def test_majority_breaks_ties_by_first_seen() -> None:
    d = await Majority(n=4).decide(ScriptedModel(["8", "9", "9", "8"]), PROMPT, parse_int)
    assert d.answer == 8 and d.votes == [2, 2]


async def test_majority_cap() -> None:
    with pytest.raises(VoteFailed, match="only 1 of 3"):
        await Majority(n=3, max_samples=4).decide(ScriptedModel(["1", "x", "y", "z"]), PROMPT, parse_int)
