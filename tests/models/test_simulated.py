"""The simulated backend: seeded, honest about its rates, greedy at temperature 0."""

from __future__ import annotations

import time

import pytest

from mdap.errors import ConfigError
from mdap.models import ChatModel, SimulatedModel
from mdap.types import Message

PROMPT: list[Message] = [{"role": "user", "content": "2 + 2 = ?"}]


def oracle(messages: object) -> str:
    return "answer = 4"


async def _texts(model: SimulatedModel, n: int, temperature: float = 0.7) -> list[str]:
    return [s.text for s in await model.sample(PROMPT, n=n, temperature=temperature)]


def test_is_a_chat_model() -> None:
    assert isinstance(SimulatedModel(oracle), ChatModel)


async def test_same_seed_same_samples_other_seed_other_samples() -> None:
    a = await _texts(SimulatedModel(oracle, error_rate=0.3, seed=1), 200)
    b = await _texts(SimulatedModel(oracle, error_rate=0.3, seed=1), 200)
    c = await _texts(SimulatedModel(oracle, error_rate=0.3, seed=2), 200)
    assert a == b
    assert a != c


async def test_error_and_red_flag_rates_are_honoured() -> None:
    model = SimulatedModel(oracle, error_rate=0.2, red_flag_rate=0.1, seed=3)
    samples = await model.sample(PROMPT, n=20_000, temperature=0.7, max_tokens=50)
    right = sum(s.text == "answer = 4" for s in samples) / len(samples)
    cut = [s for s in samples if s.finish_reason == "length"]
    assert right == pytest.approx(0.7, abs=0.015)
    assert len(cut) / len(samples) == pytest.approx(0.05, abs=0.01)
    assert all(s.completion_tokens == 50 for s in cut)
    assert model.samples_drawn == 20_000 and model.calls == 1


async def test_correlation_makes_wrong_samples_agree() -> None:
    def wrong_answers(correlation: float) -> set[str]:
        return {t for t in texts[correlation] if t != "answer = 4"}

    texts = {}
    for corr in (0.0, 1.0):
        texts[corr] = await _texts(SimulatedModel(oracle, error_rate=0.5, correlation=corr, seed=4), 400)
    assert len(wrong_answers(1.0)) == 1
    assert len(wrong_answers(0.0)) > 3


async def test_temperature_zero_is_greedy() -> None:
    model = SimulatedModel(oracle, error_rate=0.5, seed=5)
    first = await _texts(model, 4, temperature=0.0)
    again = await _texts(model, 4, temperature=0.0)
    assert len(set(first)) == 1 and first == again


async def test_latency_is_one_wait_per_request() -> None:
    model = SimulatedModel(oracle, latency_s=0.05)
    t0 = time.perf_counter()
    samples = await model.sample(PROMPT, n=8)
    assert time.perf_counter() - t0 >= 0.05
    assert len(samples) == 8 and samples[0].latency_s == 0.05


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"red_flag_rate": -0.1}, "red_flag_rate"),
        ({"error_rate": 0.6, "red_flag_rate": 0.6}, "at most 1"),
        ({"latency_s": -1}, "latency_s"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SimulatedModel(oracle, **kwargs)


async def test_n_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="n must be"):
        await SimulatedModel(oracle).sample(PROMPT, n=0)
