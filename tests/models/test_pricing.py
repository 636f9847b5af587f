"""Costs: a model's Price makes each sample's cost from its tokens; reports sum it, and say when no price was set."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from _openai_stub import Action, StubServer, completion
from pydantic import ValidationError

import mdap.models
from mdap.agents.config import PipelineConfig
from mdap.agents.worker import Meter
from mdap.cli import main
from mdap.errors import ConfigError
from mdap.models import OpenAICompatible, Price, Sample, ScriptedModel, open_model
from mdap.report import RunReport
from mdap.usage import Usage, format_cost

PROMPT = [{"role": "user", "content": "say something"}]
PRICE = Price(input_per_m=1.0, output_per_m=2.0)


def test_a_price_turns_tokens_into_cost() -> None:
    assert PRICE.cost(1_000_000, 0) == 1.0
    assert PRICE.cost(500_000, 250_000) == pytest.approx(1.0)
    assert Price().cost(10, 10) == 0.0


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_a_price_must_be_a_finite_non_negative_number(bad: float) -> None:
    with pytest.raises(ValidationError):
        Price(input_per_m=bad)
    with pytest.raises(ValidationError):
        Price(output_per_m=bad)


async def test_a_priced_client_charges_each_sample_and_the_prompt_once_per_request() -> None:
    body = completion(["short", "a much longer answer"], completion_tokens=10)  # prompt_tokens 7
    with StubServer([Action(body=body)]) as server:
        model = OpenAICompatible(server.base_url, "base-model", price=PRICE)
        samples = await model.sample(PROMPT, n=2, temperature=0.7)
    assert sum(s.cost or 0.0 for s in samples) == pytest.approx((7 * 1.0 + 10 * 2.0) / 1e6)
    assert samples[1].cost == pytest.approx(samples[1].completion_tokens * 2.0 / 1e6)  # no prompt on the second


async def test_without_a_price_samples_and_usage_cost_none() -> None:
    with StubServer() as server:
        samples = await OpenAICompatible(server.base_url, "base-model").sample(PROMPT)
    assert samples[0].cost is None
    meter = Meter(ScriptedModel(["a", "b"]))
    await meter.sample(PROMPT, n=2)
    assert meter.usage.cost is None and meter.usage.samples == 2


async def test_open_model_gives_the_price_to_the_model_it_builds() -> None:
    with StubServer() as server:
        async with open_model(server.base_url, model_name="base-model", price=PRICE) as model:
            assert isinstance(model, OpenAICompatible) and model.price == PRICE
            [sample] = await model.sample(PROMPT)
    assert sample.cost == pytest.approx((7 * 1.0 + 3 * 2.0) / 1e6)
    with pytest.raises(ConfigError, match="give it to the model itself"):
        async with open_model(ScriptedModel(["a"]), price=PRICE):
            pass


def test_usage_adds_costs_and_none_means_no_price() -> None:
    assert (Usage() + Usage()).cost is None
    assert (Usage(cost=0.5) + Usage()).cost == 0.5
    assert (Usage() + Usage(cost=0.25) + Usage(cost=0.25)).cost == 0.5
    assert (Usage(cost=1.5) - Usage(cost=0.5)).cost == 1.0
    assert Usage.from_json(Usage().to_json()) == Usage()
    assert Usage.from_json(Usage(cost=0.0).to_json()).cost == 0.0  # a price of 0 is a price
    assert format_cost(None) == "n/a (no price set)"
    assert format_cost(0.0123) == "0.0123"


def test_a_report_says_null_when_no_price_was_set() -> None:
    fields: dict[str, Any] = {"task": "t", "total_steps": 1, "steps": 1, "completed": True, "wall_seconds": 1.0}
    unpriced = RunReport(**fields, usage=Usage(samples=3))
    assert unpriced.summary_dict()["cost"] is None
    priced = RunReport(**fields, usage=Usage(samples=3, cost=0.02))
    again = RunReport.model_validate(json.loads(json.dumps(priced.summary_dict())))
    assert again.usage.cost == 0.02


def test_a_roles_file_names_the_price() -> None:
    config = PipelineConfig.model_validate(
        {"roles": [{"name": "writer"}], "price": {"input_per_m": 0.15, "output_per_m": 0.6}}
    )
    assert config.price == Price(input_per_m=0.15, output_per_m=0.6)
    with pytest.raises(ValidationError):
        PipelineConfig.model_validate({"roles": [{"name": "writer"}], "price": {"input_per_m": -1}})


ROLES = {"roles": [{"name": "writer", "voter": {"kind": "majority", "n": 1}}]}
PLAN = json.dumps({"subtasks": [{"id": "s0", "instruction": "write it", "role": "writer", "depends_on": []}]})


def _run(tmp_path: Path, *extra: str, roles: dict[str, object] = ROLES) -> tuple[int, dict[str, object]]:
    file = tmp_path / "roles.json"
    file.write_text(json.dumps(roles))
    report = tmp_path / "result.json"
    script = [Action(body=completion([PLAN])), Action(body=completion([json.dumps({"answer": "done"})]))]
    with StubServer(script) as server:
        args = ["run", "Write it", "--roles", str(file), "--model", server.base_url, "--model-name", "base-model"]
        code = main([*args, *extra, "--no-checkpoint", "--no-progress", "--report", str(report)])
    return code, json.loads(report.read_text())["report"]


def test_mdap_run_prices_from_the_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _run(tmp_path, "--price-in", "1", "--price-out", "2")
    out = capsys.readouterr().out
    assert code == 0, out
    # two requests of 7 prompt and 3 completion tokens each
    assert report["cost"] == pytest.approx(2 * (7 * 1.0 + 3 * 2.0) / 1e6)
    modules = report["modules"]
    assert isinstance(modules, dict)
    assert sum(m["cost"] for m in modules.values()) == pytest.approx(report["cost"])  # type: ignore[arg-type]
    assert f"cost {format_cost(report['cost'])}" in out  # type: ignore[arg-type]


def test_mdap_run_prices_from_the_roles_file(tmp_path: Path) -> None:
    code, report = _run(tmp_path, roles={**ROLES, "price": {"input_per_m": 1.0}})
    assert code == 0
    assert report["cost"] == pytest.approx(2 * 7 / 1e6)


def test_mdap_run_without_a_price_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _run(tmp_path)
    assert code == 0
    assert report["cost"] is None
    assert "cost n/a (no price set)" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["hanoi"], ["bench", "gaia", "--data", "mini"], ["bench", "swebench"]])
def test_every_model_command_takes_the_price_flags(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[object] = []
    if command[-1] == "swebench":
        from mdap.evals.swebench._mini import build_mini

        mini = build_mini(tmp_path / "mini")
        command = [*command, "--instances", str(mini.instances_file), "--repos", str(mini.repos), "--no-grade"]
        command += ["--out", str(tmp_path / "out"), "--sandbox", "none"]

    def refuse(spec: object, **options: object) -> object:
        seen.append(options.get("price"))
        raise ConfigError("stop here")

    monkeypatch.setattr(mdap.models, "open_model", refuse)
    monkeypatch.setattr("mdap.evals.hanoi.run.open_model", refuse, raising=False)
    monkeypatch.setattr("mdap.evals.gaia.run.open_model", refuse, raising=False)
    assert main([*command, "--price-in", "0.15", "--price-out", "0.6"]) == 2
    assert seen == [Price(input_per_m=0.15, output_per_m=0.6)]
    assert "stop here" in capsys.readouterr().err


def test_a_sample_without_a_price_costs_none() -> None:
    assert Sample("x", 1).cost is None
