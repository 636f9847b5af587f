"""MAKER's settings one word away: FirstToAheadByK.maker / mdap.voters.MAKER, and max_tokens = the red-flag limit."""

from __future__ import annotations

from collections.abc import Sequence

from mdap.models import Sample
from mdap.types import Message
from mdap.voters import MAKER, FirstToAheadByK, RedFlagPolicy


class Recorder:
    """Answers "a" and records (n, temperature, max_tokens) of each request."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float, int | None]] = []

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
    ) -> list[Sample]:
        self.calls.append((n, temperature, max_tokens))
        return [Sample("a", 1, temperature=temperature) for _ in range(n)]


PROMPT = [{"role": "user", "content": "?"}]


async def test_maker_sends_a_greedy_first_sample_and_the_rest_at_0_1_capped_at_750_tokens() -> None:
    model = Recorder()
    decision = await MAKER.decide(model, PROMPT, str)
    assert decision.answer == "a" and decision.usage.samples == 3
    assert sorted(model.calls) == [(1, 0.0, 750), (2, 0.1, 750)]  # two requests, sent together
    assert MAKER.red_flags.max_completion_tokens == 750 and MAKER.k == 3


def test_maker_takes_another_margin_and_overrides() -> None:
    voter = FirstToAheadByK.maker(k=5, max_tokens=300, max_samples=40)
    assert (voter.k, voter.first_temperature, voter.temperature, voter.max_samples) == (5, 0.0, 0.1, 40)
    assert voter.request_max_tokens == voter.red_flags.max_completion_tokens == 300


async def test_max_tokens_is_the_red_flag_limit_unless_set_apart() -> None:
    model = Recorder()
    await FirstToAheadByK(k=1, red_flags=RedFlagPolicy(max_completion_tokens=64)).decide(model, PROMPT, str)
    await FirstToAheadByK(k=1, max_tokens=200, red_flags=RedFlagPolicy(64)).decide(model, PROMPT, str)
    await FirstToAheadByK(k=1, red_flags=RedFlagPolicy(max_completion_tokens=None)).decide(model, PROMPT, str)
    assert [c[2] for c in model.calls] == [64, 200, None]
