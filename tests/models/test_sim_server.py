"""The simulated OpenAI-compatible server (models/sim_server.py), served by uvicorn on a free port, driven by
OpenAICompatible: n, usage, finish_reason length, tools round trip, retried 429/5xx, timeouts, /v1/models, /health,
API keys, and the warning when requests wait behind the client's concurrency cap."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from mdap.errors import ConfigError, ModelError
from mdap.models import OpenAICompatible, SimulatedModel
from mdap.models._process import free_port
from mdap.models.sim_server import RunningServer, SimServer

PROMPT = [{"role": "user", "content": "the answer is 42"}]
CALC = {"type": "function", "function": {"name": "calc", "parameters": {"type": "object"}}}


def echo(error_rate: float = 0.0) -> SimulatedModel:
    """Answers with the last message's content (wrong answers: a digit changed)."""
    return SimulatedModel(lambda messages: messages[-1]["content"], error_rate=error_rate, seed=1)


@pytest.fixture
def served() -> Iterator[RunningServer]:
    with RunningServer(SimServer(echo()), port=free_port()) as server:
        yield server


def client(server: RunningServer, **options: object) -> OpenAICompatible:
    return OpenAICompatible(server.base_url, "simulated", backoff_s=0.01, **options)  # type: ignore[arg-type]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


async def test_n_samples_come_in_one_request_with_usage_shared_out(served: RunningServer) -> None:
    model = client(served)
    samples = await model.sample(PROMPT, n=3, temperature=0.5, max_tokens=50, adapter=None)
    assert [s.text for s in samples] == ["the answer is 42"] * 3
    assert all(s.finish_reason == "stop" and s.temperature == 0.5 and s.latency_s > 0 for s in samples)
    assert sum(s.completion_tokens for s in samples) == 3 * (len("the answer is 42") // 4 + 1)
    assert samples[0].prompt_tokens == len("the answer is 42") // 4 + 1
    assert served.sim.stats["requests"] == 1 and model.requests == 1
    await model.aclose()


async def test_an_answer_longer_than_max_tokens_is_cut_off_for_length(served: RunningServer) -> None:
    model = client(served)
    long = [{"role": "user", "content": "word " * 40}]
    samples = await model.sample(long, n=2, temperature=0.5, max_tokens=3)
    assert [(s.finish_reason, s.completion_tokens, len(s.text)) for s in samples] == [("length", 3, 12)] * 2
    await model.aclose()


async def test_tool_calls_round_trip(served: RunningServer) -> None:
    model = client(served)
    (call,) = await model.sample(PROMPT, temperature=0.5, tools=[CALC])
    assert call.finish_reason == "tool_calls"
    calls = json.loads(call.text)["tool_calls"]  # the format mdap's workers read
    assert calls[0]["function"]["name"] == "calc"
    assert json.loads(calls[0]["function"]["arguments"]) == {"input": "the answer is 42"}
    history = [
        *PROMPT,
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "6 * 7 = 42"},
    ]
    (answer,) = await model.sample(history, temperature=0.5, tools=[CALC])  # type: ignore[arg-type]
    assert (answer.text, answer.finish_reason) == ("6 * 7 = 42", "stop")
    model.extra_body = {"tool_choice": "none"}
    (plain,) = await model.sample(PROMPT, temperature=0.5, tools=[CALC])
    assert plain.text == "the answer is 42"
    await model.aclose()


async def test_429_and_5xx_are_retried_until_an_answer(served: RunningServer) -> None:
    served.sim.script([{"status": 503}, {"status": 429, "retry_after": 0}, {"status": 500}])
    model = client(served)
    (sample,) = await model.sample(PROMPT, temperature=0.5)
    assert sample.text == "the answer is 42"
    assert model.requests == 4 and served.sim.stats == {"requests": 4, "samples": 1, "faults": 3}
    await model.aclose()


async def test_retries_that_run_out_name_server_model_and_cause(served: RunningServer) -> None:
    served.sim.script([{"status": 502}] * 3)
    model = client(served, max_retries=2)
    with pytest.raises(ModelError) as err:
        await model.sample(PROMPT, temperature=0.5)
    text = str(err.value)
    assert served.base_url in text and "'simulated'" in text and "HTTP 502: simulated fault 502" in text
    assert "after 3 attempts" in text


async def test_a_client_error_is_not_retried_and_says_what_to_check(served: RunningServer) -> None:
    model = client(served)
    with pytest.raises(ModelError, match=r"model 'nope'.*HTTP 404.*does not exist.*/models lists"):
        await model.sample(PROMPT, adapter="nope")
    assert served.sim.stats["requests"] == 1


async def test_a_slow_answer_times_out_and_is_retried(served: RunningServer) -> None:
    served.sim.script([{"status": 200, "hang_s": 3.0}, {"status": 200, "hang_s": 3.0}])
    model = client(served, timeout=0.3, max_retries=1)
    with pytest.raises(ModelError, match=r"no answer within the 0.3 s timeout after 2 attempts"):
        await model.sample(PROMPT, temperature=0.5)
    served.sim.script([{"status": 200, "hang_s": 3.0}])
    model = client(served, timeout=0.3, max_retries=1)
    (sample,) = await model.sample(PROMPT, temperature=0.5)  # the retry answers at once
    assert sample.text == "the answer is 42"
    await model.aclose()


async def test_models_listing_health_and_model_none(served: RunningServer) -> None:
    model = OpenAICompatible(served.base_url)
    assert await model.models() == ["simulated"]
    await model.sample(PROMPT)
    assert model.model == "simulated"
    await model.aclose()
    root = served.base_url.removesuffix("/v1")
    assert (await asyncio.to_thread(get, root + "/health"))[0] == 200
    status, body = await asyncio.to_thread(get, served.base_url + "/models")
    assert status == 200 and json.loads(body)["data"][0]["id"] == "simulated"


async def test_an_api_key_is_required_when_set_and_never_shown() -> None:
    with RunningServer(SimServer(echo(), api_key="sk-simsecret-0123456789abcdef"), port=free_port()) as server:
        good = OpenAICompatible(server.base_url, "simulated", "sk-simsecret-0123456789abcdef")
        assert (await good.sample(PROMPT))[0].text == "the answer is 42"
        await good.aclose()
        bad = OpenAICompatible(server.base_url, "simulated", "sk-wrongwrong-0123456789abcdef")
        with pytest.raises(ModelError, match="HTTP 401") as err:
            await bad.sample(PROMPT)
        assert "wrongwrong" not in str(err.value) and "wrongwrong" not in repr(bad)


async def test_fault_rate_and_error_rate_are_seeded_server_settings() -> None:
    with RunningServer(SimServer(echo(error_rate=1.0), fault_rate=1.0), port=free_port()) as server:
        model = OpenAICompatible(server.base_url, "simulated", max_retries=1, backoff_s=0.01)
        with pytest.raises(ModelError, match="HTTP 503"):
            await model.sample(PROMPT)
        server.sim.fault_rate = 0.0
        samples = await model.sample(PROMPT, n=4, temperature=0.5)
        assert all(s.text != "the answer is 42" for s in samples)  # every sample wrong, as error_rate=1 says
        await model.aclose()


async def test_bad_request_bodies_get_a_400_naming_the_field(served: RunningServer) -> None:
    def post(body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(served.base_url + "/chat/completions", body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    for body, field in [
        (b"not json", "JSON object"),
        (json.dumps({"model": "simulated", "messages": []}).encode(), "messages"),
        (json.dumps({"model": "simulated", "messages": PROMPT, "n": 0}).encode(), "n must"),
        (json.dumps({"model": "simulated", "messages": PROMPT, "max_tokens": -1}).encode(), "max_tokens"),
        (json.dumps({"model": "simulated", "messages": PROMPT, "tools": [{"type": "function"}]}).encode(), "tools"),
    ]:
        status, answer = await asyncio.to_thread(post, body)
        assert status == 400 and field in json.loads(answer)["error"]["message"]


async def test_waiting_behind_the_concurrency_cap_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with RunningServer(SimServer(echo(), latency_s=0.3), port=free_port()) as server:
        model = OpenAICompatible(server.base_url, "simulated", max_concurrency=1, warn_wait_s=0.1)
        with caplog.at_level(logging.WARNING, logger="mdap.models"):
            await asyncio.gather(*(model.sample(PROMPT, temperature=0.5) for _ in range(3)))
        await model.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.name == "mdap.models"]
    assert len(warnings) == 1  # once a minute, not once a request
    assert "max_concurrency=1" in warnings[0] and server.base_url in warnings[0]
    assert model.slot_wait_s >= 0.3 + 0.6  # the second request waited 0.3 s, the third 0.6 s


def test_a_bad_fault_script_is_refused() -> None:
    sim = SimServer(echo())
    for bad in ([{"status": "503"}], [{"status": 99}], [{"hang_s": -1}], [{"colour": "red"}]):
        with pytest.raises(ConfigError):
            sim.script(bad)
    assert sim.script([{"status": 429, "retry_after": 0}]) == 1
