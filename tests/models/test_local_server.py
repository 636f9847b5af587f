"""The embedded model on a real CPU vLLM server: chat, LoRA adapters (from start and at run time), voting, Hanoi
through the CLI, and a server killed mid-run. One server serves the whole session (see conftest.py)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from pathlib import Path

import psutil
import pytest

from mdap.cli import main
from mdap.errors import ConfigError, ModelError, RedFlag
from mdap.models import Adapter, LocalModel
from mdap.types import Message
from mdap.voters import FirstToAheadByK, RedFlagPolicy

QUESTION: list[Message] = [{"role": "user", "content": "What is 2+2? Answer with a single digit."}]
STORY: list[Message] = [{"role": "user", "content": "Write one sentence about the sea."}]


def test_adapter_values_name_their_base(loras: dict[str, Path], local_base: Path) -> None:
    adapter = Adapter.from_peft("a", loras["a"])
    assert adapter.rank == 8
    assert Path(adapter.base).resolve() == local_base.resolve()


async def test_base_model_answers_a_chat_completion(local_model: LocalModel) -> None:
    [sample] = await local_model.sample(QUESTION, max_tokens=16)
    assert "4" in sample.text
    assert sample.completion_tokens > 0 and sample.prompt_tokens > 0
    assert sample.finish_reason in ("stop", "length") and sample.latency_s > 0 and sample.adapter is None
    served = await local_model.client.models()
    assert served[0] == "SmolLM2-135M-Instruct" and "a" in served


async def test_adapter_output_differs_from_base_and_is_reproducible(local_model: LocalModel) -> None:
    # Sequential requests: a base request batched together with LoRA requests can diverge a few tokens in.
    [base] = await local_model.sample(STORY, max_tokens=24)
    [first] = await local_model.sample(STORY, max_tokens=24, adapter="a")
    [second] = await local_model.sample(STORY, max_tokens=24, adapter="a")
    assert first.adapter == "a"
    assert first.text == second.text
    assert first.text != base.text


async def test_runtime_load_request_unload_then_a_clear_error(local_model: LocalModel, loras: dict[str, Path]) -> None:
    server = local_model.server
    adapter = await server.load_adapter("b", loras["b"])
    assert adapter.base == str(server.base) and "b" in server.adapters
    [sample] = await local_model.sample(STORY, max_tokens=12, adapter="b")
    assert sample.adapter == "b" and sample.completion_tokens > 0
    with pytest.raises(ConfigError, match="already served"):
        await server.load_adapter("b", loras["b"])
    await server.unload_adapter("b")
    assert "b" not in server.adapters
    with pytest.raises(ModelError, match=r"model 'b'.*HTTP 404"):
        await local_model.sample(STORY, max_tokens=12, adapter="b")


async def test_an_adapter_for_another_base_is_refused(
    local_model: LocalModel, loras: dict[str, Path], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    shutil.copytree(loras["b"], other)
    config = json.loads((other / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "Qwen/Qwen2.5-0.5B-Instruct"
    (other / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"trained on 'Qwen/Qwen2.5-0.5B-Instruct'.*base model is"):
        await local_model.server.load_adapter("other", other)
    assert "other" not in await local_model.client.models()


def _digit(text: str) -> str:
    digits = re.findall(r"\d+", text)
    if not digits:
        raise RedFlag("parse", f"no number in {text!r}")
    return digits[-1]


async def test_a_vote_on_a_trivial_question(local_model: LocalModel) -> None:
    voter = FirstToAheadByK(k=2, temperature=0.0, max_samples=6, max_tokens=16, red_flags=RedFlagPolicy(16))
    decision = await voter.decide(local_model, QUESTION, _digit)
    assert decision.answer == "4"
    assert decision.usage.samples >= 2 and decision.votes[0] >= 2


def test_hanoi_with_the_local_model_ends_in_a_vote_failed_report(local_model: LocalModel, tmp_path: Path) -> None:
    """`--model local` (here on the session's server, through $MDAP_LOCAL_URL): the 135M model cannot do Hanoi."""
    report = tmp_path / "report.json"
    argv = ["hanoi", "--disks", "3", "--model", "local", "--k", "2", "--max-samples", "4"]
    argv += ["--max-tokens", "48", "--run-dir", str(tmp_path / "run"), "--report", str(report), "--no-progress"]
    t0 = time.perf_counter()
    assert main(argv) == 1
    assert time.perf_counter() - t0 < 120
    data = json.loads(report.read_text())
    assert data["completed"] is False
    assert "no answer led by 2" in data["failure"]
    assert data["samples"] >= 4


async def test_a_local_model_uses_the_shared_server_when_one_is_named(local_model: LocalModel) -> None:
    url = local_model.server.base_url
    assert os.environ["MDAP_LOCAL_URL"] == url
    async with LocalModel() as shared:
        [sample] = await shared.sample(QUESTION, max_tokens=16)
        assert shared.shared_url == url and "4" in sample.text
        with pytest.raises(ModelError, match="uses the shared server"):
            _ = shared.server
    with pytest.raises(ConfigError, match="run-time adapter loading"):
        LocalModel(runtime_lora=True)


async def test_a_shared_server_serves_the_adapters_it_has_and_names_those_it_lacks(
    local_model: LocalModel, loras: dict[str, Path]
) -> None:
    async with LocalModel(adapters={"a": loras["a"]}, adapter="a") as shared:  # the session server serves "a"
        [sample] = await shared.sample(QUESTION, max_tokens=4)
        assert sample.text is not None
    with pytest.raises(ConfigError, match=r"does not serve the adapter\(s\) nope \(it serves .*\ba\b"):
        await LocalModel(adapters={"nope": loras["b"]}).start()


async def test_server_killed_mid_run_is_a_model_error_and_leaves_no_process(local_model: LocalModel) -> None:
    """Runs last in this module: it kills the session's server (the fixture restarts it for any later user)."""
    server = local_model.server
    group = server.pid
    assert group is not None
    long_story: list[Message] = [
        {"role": "user", "content": "Write a long story about the sea, of 500 words at least."}
    ]
    # a request still in flight after 1.5 s (one sentence each, four can end sooner on a quiet machine)
    for _ in range(5):
        task = asyncio.create_task(local_model.sample(long_story, n=4, temperature=1.0, max_tokens=400))
        await asyncio.sleep(1.5)
        if not task.done():
            break
        await task
    assert not task.done(), "every request ended within 1.5 s: none was in flight to kill"
    t0 = time.perf_counter()
    await asyncio.to_thread(server.kill)
    os.environ.pop("MDAP_LOCAL_URL", None)  # no later LocalModel() may use the dead server (the fixture restarts it)
    with pytest.raises(ModelError, match=re.escape(server.base_url)):
        await task
    assert time.perf_counter() - t0 < 30
    assert _alive_in_group(group, wait_s=10) == [], "processes of the killed server still run"


def _alive_in_group(group: int, wait_s: float) -> list[str]:
    """Processes of process group ``group`` still running (zombies waiting to be reaped do not count)."""
    deadline = time.monotonic() + wait_s
    while True:
        left = []
        for p in psutil.process_iter(["pid", "name", "status"]):
            try:
                if os.getpgid(p.pid) == group and p.info["status"] != psutil.STATUS_ZOMBIE:
                    left.append(f"{p.pid} {p.info['name']} {p.info['status']}")
            except (ProcessLookupError, psutil.Error):
                continue
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)
