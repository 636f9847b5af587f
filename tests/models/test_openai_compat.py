"""OpenAICompatible against scripted loopback servers: batching, token accounting, retries, timeouts, errors."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time

import pytest
from _openai_stub import Action, StubServer, completion

from mdap.errors import ConfigError, ModelError
from mdap.models import OpenAICompatible
from mdap.models._process import free_port
from mdap.models.openai_compat import _api_key, _split_tokens

PROMPT = [{"role": "user", "content": "say something"}]


async def test_n_samples_in_one_request_with_usage_split_and_finish_reasons() -> None:
    body = completion(["short", "a much longer answer"], completion_tokens=10)
    with StubServer([Action(body=body)]) as server:
        model = OpenAICompatible(server.base_url, "base-model")
        samples = await model.sample(PROMPT, n=2, temperature=0.7, max_tokens=5, adapter="planner")
    assert [s.text for s in samples] == ["short", "a much longer answer"]
    assert sum(s.completion_tokens for s in samples) == 10
    assert samples[0].completion_tokens < samples[1].completion_tokens
    assert {s.finish_reason for s in samples} == {"stop"}
    assert all(s.prompt_tokens == 7 and s.adapter == "planner" and s.temperature == 0.7 for s in samples)
    assert all(s.latency_s > 0 for s in samples)
    assert len(server.requests) == 1
    sent = server.requests[0]
    assert (sent["model"], sent["n"], sent["max_tokens"], sent["temperature"]) == ("planner", 2, 5, 0.7)


async def test_a_choice_cut_off_at_max_tokens_counts_max_tokens() -> None:
    body = completion(["cut off mid sen", "ok"], completion_tokens=7, finish=["length", "stop"])
    with StubServer([Action(body=body)]) as server:
        model = OpenAICompatible(server.base_url, "base-model")
        samples = await model.sample(PROMPT, n=2, temperature=0.5, max_tokens=5)
    assert [(s.finish_reason, s.completion_tokens) for s in samples] == [("length", 5), ("stop", 2)]


async def test_server_that_ignores_n_gets_concurrent_single_requests() -> None:
    with StubServer(honour_n=False) as server:
        model = OpenAICompatible(server.base_url, "base-model")
        first = await model.sample(PROMPT, n=3, temperature=0.5)
        assert model.use_n is False
        second = await model.sample(PROMPT, n=3, temperature=0.5)
    assert len(first) == len(second) == 3
    assert len(server.requests) == 3 + 3  # one n=3 request answered once, then 2 + 3 singles
    assert all("n" not in r for r in server.requests[3:])


async def test_greedy_samples_are_single_requests() -> None:
    with StubServer() as server:
        samples = await OpenAICompatible(server.base_url, "base-model").sample(PROMPT, n=3, temperature=0.0)
    assert len(samples) == 3
    assert len(server.requests) == 3 and all("n" not in r for r in server.requests)


async def test_concurrency_is_bounded() -> None:
    with StubServer([Action(hang_s=0.2) for _ in range(6)], honour_n=False) as server:
        model = OpenAICompatible(server.base_url, "base-model", max_concurrency=2, use_n=False)
        t0 = time.perf_counter()
        samples = await model.sample(PROMPT, n=6)
        elapsed = time.perf_counter() - t0
    assert len(samples) == 6
    assert elapsed >= 0.55, f"6 requests of 0.2 s, 2 at a time, took {elapsed:.2f} s"


async def test_429_and_5xx_are_retried_with_backoff() -> None:
    script = [
        Action(status=503, body={"error": {"message": "overloaded"}}),
        Action(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "0"}),
    ]
    with StubServer(script) as server:
        model = OpenAICompatible(server.base_url, "base-model", backoff_s=0.01)
        samples = await model.sample(PROMPT)
    assert samples[0].text == "answer 0"
    assert len(server.requests) == 3


async def test_retries_run_out_into_a_model_error_naming_server_and_model() -> None:
    script = [Action(status=500, body={"error": {"message": "boom"}}) for _ in range(3)]
    with StubServer(script) as server:
        model = OpenAICompatible(server.base_url, "base-model", max_retries=2, backoff_s=0.01)
        with pytest.raises(ModelError) as err:
            await model.sample(PROMPT)
    text = str(err.value)
    assert server.base_url in text and "'base-model'" in text and "HTTP 500: boom" in text and "3 attempts" in text


async def test_unknown_model_fails_at_once_with_a_hint() -> None:
    script = [Action(status=404, body={"error": {"message": "The model `b` does not exist."}})]
    with StubServer(script) as server:
        model = OpenAICompatible(server.base_url, "base-model")
        with pytest.raises(ModelError, match=r"model 'b'.*HTTP 404.*does not exist.*/models lists"):
            await model.sample(PROMPT, adapter="b")
    assert len(server.requests) == 1


async def test_a_hung_server_times_out_into_a_model_error() -> None:
    with StubServer([Action(hang_s=30), Action(hang_s=30)]) as server:
        model = OpenAICompatible(server.base_url, "base-model", timeout=0.3, max_retries=1, backoff_s=0.01)
        t0 = time.perf_counter()
        with pytest.raises(ModelError, match=r"no answer within the 0.3 s timeout after 2 attempts"):
            await model.sample(PROMPT)
    assert time.perf_counter() - t0 < 5


async def test_no_server_is_a_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    model = OpenAICompatible(url, "base-model", max_retries=1, backoff_s=0.01)
    with pytest.raises(ModelError, match=r"connection failed .* after 2 attempts; check that the server is running"):
        await model.sample(PROMPT)


_DYING_SERVER = textwrap.dedent(
    """
    import http.server, os, sys, time
    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            print("busy", flush=True)
            time.sleep(60)
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
    """
)


async def test_server_killed_mid_request_is_a_model_error_not_a_hang() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _DYING_SERVER, str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        model = OpenAICompatible(f"http://127.0.0.1:{port}/v1", "base-model", timeout=30, backoff_s=0.05)
        for _ in range(100):  # wait until it listens
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        task = asyncio.create_task(model.sample(PROMPT))
        assert proc.stdout is not None
        await proc.stdout.readline()  # the request is being served
        t0 = time.perf_counter()
        proc.kill()
        with pytest.raises(ModelError, match="connection failed"):
            await task
        assert time.perf_counter() - t0 < 10
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_model_none_asks_the_server_for_its_first_model() -> None:
    with StubServer() as server:
        model = OpenAICompatible(server.base_url)
        await model.sample(PROMPT)
        assert model.model == "base-model"
        assert await model.models() == ["base-model"]
    assert server.requests[0]["model"] == "base-model"


def test_one_client_serves_several_event_loops() -> None:
    with StubServer() as server:
        model = OpenAICompatible(server.base_url, "base-model")
        assert asyncio.run(model.sample(PROMPT))[0].text == "answer 0"
        assert asyncio.run(model.sample(PROMPT))[0].text == "answer 0"


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://x/v1", ""])
def test_bad_base_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="http"):
        OpenAICompatible(url, "m")


async def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="max_concurrency"):
        OpenAICompatible("http://127.0.0.1:1/v1", "m", max_concurrency=0)
    model = OpenAICompatible("http://127.0.0.1:1/v1", "m")
    with pytest.raises(ConfigError, match="n must be >= 1"):
        await model.sample(PROMPT, n=0)


def test_an_openai_key_goes_only_to_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    assert _api_key("http://127.0.0.1:8000/v1", None) == "EMPTY"
    assert _api_key("https://evil.example/openai.com/v1", None) == "EMPTY"
    assert _api_key("https://api.openai.com/v1", None) == "sk-secret"
    assert _api_key("http://127.0.0.1:8000/v1", "given") == "given"


def test_token_split_adds_up_follows_length_and_charges_cut_off_choices_the_limit() -> None:
    shares = _split_tokens(101, ["a", "bbbbbbbbbb", "ccccc"], [None, None, None])
    assert sum(shares) == 101
    assert shares[1] > shares[2] > shares[0]
    assert _split_tokens(50, ["cut off here", "done", "cut too"], [20, None, 20]) == [20, 10, 20]
    assert sum(_split_tokens(30, ["x", "y"], [20, 20])) == 30  # a server that counts otherwise still adds up
