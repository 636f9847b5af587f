"""JSON nested too deeply to parse (100,000 ``[``) is a parse failure wherever mdap reads JSON from outside: a
PlanError for a planner's reply, a red flag for a worker's, a ConfigError for a user's file - never a
RecursionError out of ``pipeline.run()`` or a traceback out of the CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from mdap._cli.run import dry_run_model
from mdap.errors import ConfigError, PlanError, RedFlag
from mdap.jsontext import TOO_DEEP, loads_json, raw_decode_json
from mdap.types import Message

DEEP = "[" * 100_000 + "]" * 100_000  # valid JSON, too deep for any recursive parser
DEEP_OBJECT = '{"a": ' * 100_000 + "1" + "}" * 100_000


@pytest.mark.parametrize("doc", [DEEP, DEEP_OBJECT, DEEP.encode()])
def test_too_deep_is_a_json_decode_error(doc: str | bytes) -> None:
    with pytest.raises(json.JSONDecodeError, match=TOO_DEEP):
        loads_json(doc)
    with pytest.raises(RecursionError):  # what the helper is for: json itself does not say ValueError
        json.loads(doc)


def test_json_that_is_fine_parses_as_before() -> None:
    assert loads_json('{"a": [[1, 2], {"b": null}]}') == {"a": [[1, 2], {"b": None}]}
    assert loads_json(b"[[[[3]]]]") == [[[[3]]]]
    with pytest.raises(json.JSONDecodeError, match="Expecting value"):
        loads_json("[1, ")
    decoder = json.JSONDecoder()
    assert raw_decode_json(decoder, 'x {"a": 1} tail', 2) == ({"a": 1}, 10)
    with pytest.raises(json.JSONDecodeError, match=TOO_DEEP):
        raw_decode_json(decoder, "x " + DEEP, 2)


def _pipeline(answer: str, *, planner: bool) -> object:
    from mdap.agents.config import PipelineConfig
    from mdap.models import SimulatedModel

    def model(messages: Sequence[Message]) -> str:
        is_planner = messages[0]["content"].startswith("You are the planner")
        return answer if is_planner == planner else dry_run_model(messages)

    config = PipelineConfig.model_validate({"roles": [{"name": "writer", "description": "writes"}]})
    pipeline = config.build(SimulatedModel(model))
    pipeline.checkpoint(None)
    return pipeline


async def test_a_deep_plan_is_a_plan_error_out_of_pipeline_run() -> None:
    pipeline = _pipeline(DEEP, planner=True)
    with pytest.raises(PlanError, match=TOO_DEEP):
        await pipeline.run("say hello")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "reply",
    [
        '{"answer": ' + DEEP + "}",
        '{"tool_calls": ' + DEEP + "}",
        'I will call {"name": "files", "arguments": ' + DEEP + "}",
        '{"name": "files", "arguments": "' + DEEP + '"}',
    ],
)
def test_a_deep_worker_reply_is_a_red_flag(reply: str) -> None:
    from mdap.agents.replies import read_reply

    try:
        parsed = read_reply(reply, {})
    except RedFlag:
        return
    # nothing usable read: the worker's parse flags a reply without answer or calls ("parse")
    assert parsed.answer is None and not parsed.calls


def test_deep_task_answers_are_red_flags() -> None:
    from mdap.evals.hanoi.task import parse_pegs
    from mdap.evals.swebench.patches import parse_fix

    with pytest.raises(RedFlag, match="parse"):
        parse_pegs(DEEP, 3)
    with pytest.raises(RedFlag, match="parse"):
        parse_fix('{"edits": ' + DEEP + "}")


def test_deep_input_files_are_config_errors(tmp_path: Path) -> None:
    from mdap.agents.config import load_config
    from mdap.evals.attribution.config import load_config as load_attribution
    from mdap.evals.gaia import load_gaia
    from mdap.evals.swebench import load_instances, load_predictions
    from mdap.voters import trace_calibration

    one_line = tmp_path / "deep.jsonl"
    one_line.write_text(DEEP + "\n")
    whole = tmp_path / "deep.json"
    whole.write_text(DEEP)
    split = tmp_path / "gaia" / "2023" / "validation"
    split.mkdir(parents=True)
    (split / "metadata.jsonl").write_text(DEEP + "\n")
    toml = tmp_path / "deep.toml"
    toml.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    too_deep = [  # (reader, what its message says)
        (lambda: load_config(whole), TOO_DEEP),
        (lambda: load_config(toml), "recursion"),  # tomllib says "maximum recursion depth exceeded"
        (lambda: load_attribution(whole), TOO_DEEP),
        (lambda: load_attribution(toml), "recursion"),
        (lambda: load_gaia(tmp_path / "gaia"), TOO_DEEP),
        (lambda: load_instances(whole), TOO_DEEP),
        (lambda: load_instances(one_line), TOO_DEEP),
        (lambda: load_predictions(whole), TOO_DEEP),
        (lambda: load_predictions(one_line), TOO_DEEP),
        (lambda: trace_calibration(one_line), "is not a trace record"),
    ]
    for read, message in too_deep:
        with pytest.raises(ConfigError, match=message):
            read()


def test_gaia_metadata_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    from mdap.evals.gaia import load_gaia

    split = tmp_path / "2023" / "validation"
    split.mkdir(parents=True)
    (split / "metadata.jsonl").write_bytes(b'{"task_id": "\xff\xfe"}\n')
    with pytest.raises(ConfigError, match="line 1: not UTF-8"):
        load_gaia(tmp_path)


def test_a_deep_error_body_from_a_server_is_shown_as_text() -> None:
    from mdap.models.openai_compat import _error_text

    assert _error_text(DEEP.encode()).startswith("[[[")
