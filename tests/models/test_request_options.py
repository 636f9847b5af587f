"""Native tool calls and structured outputs (issue 17): OpenAICompatible sends ``tools``/``tool_choice`` and
``response_format`` where the server takes them, finds out on first use and remembers; ``mdap serve`` (VLLMServer)
starts vLLM with the tool parser of the model's family and structured outputs without free whitespace; the
schemas mdap sends hold no ``pattern`` (it crashes vLLM 0.32's xgrammar backend)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _openai_stub import Action, StubServer

from mdap.agents.worker import _ANSWER_SCHEMA, _reply_schema
from mdap.errors import ModelError
from mdap.evals.gaia import attachment_tool, calculator_tool
from mdap.models import OpenAICompatible, VLLMServer, json_schema_format, supports
from mdap.planners import plan_schema

PROMPT = [{"role": "user", "content": "what is 17 * 23?"}]
TOOLS = [calculator_tool().spec()]
FORMAT = json_schema_format("worker_reply", _ANSWER_SCHEMA)


def _refusal(message: str) -> Action:
    return Action(status=400, body={"error": {"message": message, "type": "BadRequestError"}})


async def test_native_tools_are_tried_on_first_use_and_remembered() -> None:
    with StubServer() as server:
        model = OpenAICompatible(server.base_url, "base-model")
        assert model.native_tools is None and supports(model, "native_tools")
        await model.sample(PROMPT, tools=TOOLS, tool_choice="required")
        assert model.native_tools is True
        await model.sample(PROMPT, n=2, temperature=0.7, tools=TOOLS, tool_choice="required")
    first, second = server.requests
    assert first["tools"] == TOOLS and first["tool_choice"] == "required"
    assert second["tools"] == TOOLS and second["n"] == 2  # known now: batched as usual


async def test_a_refused_tool_request_is_sent_again_without_tools_and_they_stay_off() -> None:
    refusal = _refusal('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set')
    with StubServer([refusal]) as server:
        model = OpenAICompatible(server.base_url, "base-model")
        [sample] = await model.sample(PROMPT, tools=TOOLS, tool_choice="auto")
        assert sample.text == "answer 0"
        assert model.native_tools is False and not supports(model, "native_tools")
        await model.sample(PROMPT, tools=TOOLS, tool_choice="required")
    assert "tools" in server.requests[0]
    assert all("tools" not in r and "tool_choice" not in r for r in server.requests[1:])
    assert len(server.requests) == 3


async def test_a_server_that_takes_required_but_refuses_auto_keeps_native_tools_for_required() -> None:
    with StubServer([Action(), _refusal('"auto" tool choice requires --enable-auto-tool-choice')]) as server:
        model = OpenAICompatible(server.base_url, "base-model")
        await model.sample(PROMPT, tools=TOOLS, tool_choice="required")
        await model.sample(PROMPT, tools=TOOLS, tool_choice="auto")  # refused, sent again without tools
        await model.sample(PROMPT, tools=TOOLS, tool_choice="auto")  # not offered again
        await model.sample(PROMPT, tools=TOOLS, tool_choice="required")
    assert model.native_tools is True
    assert [r.get("tool_choice") for r in server.requests] == ["required", "auto", None, None, "required"]


async def test_structured_outputs_are_tried_and_turned_off_when_refused() -> None:
    with StubServer([_refusal("response_format is not supported")]) as server:
        model = OpenAICompatible(server.base_url, "base-model")
        await model.sample(PROMPT, response_format=FORMAT)
        assert model.structured_outputs is False
        await model.sample(PROMPT, response_format=FORMAT)
    assert server.requests[0]["response_format"] == FORMAT
    assert all("response_format" not in r for r in server.requests[1:])


async def test_features_configured_off_are_never_sent_and_other_refusals_still_fail() -> None:
    with StubServer([_refusal("max_tokens is too large")]) as server:
        model = OpenAICompatible(server.base_url, "base-model", native_tools=False, structured_outputs=False)
        # the refusal is not about fields that were never sent: it is the caller's error
        with pytest.raises(ModelError, match="max_tokens is too large"):
            await model.sample(PROMPT, tools=TOOLS, tool_choice="required", response_format=FORMAT)
    assert not {"tools", "tool_choice", "response_format"} & set(server.requests[0])


def _base(tmp_path: Path, model_type: str) -> Path:
    folder = tmp_path / model_type
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return folder


def test_serve_starts_vllm_with_the_families_tool_parser_and_compact_json(tmp_path: Path) -> None:
    qwen = VLLMServer(_base(tmp_path, "qwen2"), port=8123, python="/bin/false", vllm_version="0.32.0")
    argv = " ".join(qwen.command())
    assert "--enable-auto-tool-choice --tool-call-parser hermes" in argv
    assert '--structured-outputs-config {"backend":"xgrammar","disable_any_whitespace":true}' in argv
    client = qwen.client()
    assert client.native_tools is True and client.structured_outputs is True

    llama = VLLMServer(_base(tmp_path, "llama"), port=8123, python="/bin/false", vllm_version="0.6.3")
    argv = " ".join(llama.command())
    assert "--tool-call-parser" not in argv and "--structured-outputs-config" not in argv  # no such flag in 0.6
    assert llama.client().native_tools is False

    off = VLLMServer(_base(tmp_path, "qwen3"), port=8123, python="/bin/false", tool_parser=None, compact_json=False)
    assert "--tool-call-parser" not in " ".join(off.command())


def _keys(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        return set(schema) | {k for v in schema.values() for k in _keys(v)}
    if isinstance(schema, list):
        return {k for v in schema for k in _keys(v)}
    return set()


def test_no_schema_mdap_sends_has_a_pattern(tmp_path: Path) -> None:
    tools = [calculator_tool(), attachment_tool(None)]
    for schema in (plan_schema(["solver"], 5), _ANSWER_SCHEMA, _reply_schema(tools)):
        assert "pattern" not in _keys(schema)
    plan = plan_schema(["solver"], 5)
    item = plan["properties"]["subtasks"]
    assert item["maxItems"] == 5 and item["items"]["properties"]["role"] == {"enum": ["solver"]}
