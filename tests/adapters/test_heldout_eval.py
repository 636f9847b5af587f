"""Held-out evaluation: per-state p, collision rate, k_min and cost -- on a simulated model with known error
and correlation, with and without decorrelated sampling; and the CLI's dataset and diagnose actions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdap.cli import main
from mdap.errors import ConfigError
from mdap.evals.distill import hanoi_teacher, split_heldout
from mdap.evals.distill.compare import compare_models
from mdap.evals.distill.evaluate import evaluate_heldout, hanoi_parser
from mdap.evals.hanoi import simulated_hanoi_model
from mdap.models.lora_data import read_examples
from mdap.voters import k_min


async def test_heldout_p_and_collision_match_the_simulated_model() -> None:
    _, held = split_heldout(hanoi_teacher([4, 5]), 20, seed=1)
    model = simulated_hanoi_model(error_rate=0.2, correlation=1.0, seed=2)
    report = await evaluate_heldout(model, held, hanoi_parser, samples=20, steps=63)
    assert report.states == 20 and report.samples_per_state == 20
    assert report.pooled_p == pytest.approx(0.8, abs=0.05)
    assert report.collision_rate == 1.0  # fully correlated errors: every wrong sample of a state agrees
    assert report.fraction_above_half == 1.0 and report.p_quantiles["min"] > 0.5
    assert report.k_min == k_min(report.pooled_p, 63, 0.95)
    assert report.expected_samples_run == pytest.approx(report.expected_samples_per_step * 63)  # type: ignore[operator]
    assert [s.right for s in report.per_state] == [round(s.p * 20) for s in report.per_state]  # type: ignore[operator]


async def test_reports_of_a_weak_model_warn_and_name_no_k() -> None:
    _, held = split_heldout(hanoi_teacher([3]), 5, seed=0)
    report = await evaluate_heldout(simulated_hanoi_model(error_rate=0.7, seed=0), held, hanoi_parser, samples=10)
    assert report.k_min is None and report.expected_samples_per_step is None
    assert report.fraction_above_half < 1.0
    assert any("p <= 1/2" in w for w in report.warnings)


async def test_compare_runs_base_adapter_and_decorrelated() -> None:
    _, held = split_heldout(hanoi_teacher([3]), 4, seed=0)
    seen: list[tuple[str, bool]] = []
    reports = await compare_models(
        simulated_hanoi_model(error_rate=0.1, seed=0), held, adapter="hanoi", decorrelate=True, samples=6,
        on_report=lambda r: seen.append((r.model, r.decorrelated)),
    )  # fmt: skip
    assert [(r.model, r.decorrelated) for r in reports] == [("base", False), ("hanoi", False), ("hanoi", True)]
    assert seen == [("base", False), ("hanoi", False), ("hanoi", True)]  # each one as soon as it was measured
    only = await compare_models(
        simulated_hanoi_model(error_rate=0.1, seed=0), held, adapter="hanoi", base=False, plain=False,
        decorrelate=True, samples=6,
    )  # fmt: skip
    assert [(r.model, r.decorrelated) for r in only] == [("hanoi", True)]
    assert reports[2].headline()["model"] == "hanoi +decorrelated"


async def test_bad_heldout_input_is_refused() -> None:
    held = hanoi_teacher([3])[:1]
    with pytest.raises(ConfigError, match="at least one held-out example and 2 samples"):
        await evaluate_heldout(simulated_hanoi_model(), held, hanoi_parser, samples=1)
    broken = held[0].model_copy(update={"meta": {}})
    with pytest.raises(ConfigError, match=r"has no meta\.disks"):
        await evaluate_heldout(simulated_hanoi_model(), [broken], hanoi_parser)


def test_cli_dataset_and_diagnose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "trace.jsonl"
    assert main(["hanoi", "--disks", "3", "--error-rate", "0.3", "--k", "2", "--seed", "1", "--trace", str(trace),
                 "--run-dir", str(tmp_path / "run"), "--no-progress"]) in (0, 1)  # fmt: skip
    out = tmp_path / "data.jsonl"
    code = main(["adapters", "dataset", "--disks", "3..4", "--trace", str(trace), "--trace-disks", "3",
                 "--heldout", "4", "--out", str(out)])  # fmt: skip
    assert code == 0
    train, held = read_examples(out), read_examples(tmp_path / "data.heldout.jsonl")
    assert len(held) == 4
    assert len(train) == 3 * (7 + 15) - 3 * 4  # the trace's prompts are the teacher's: deduplicated
    assert all(ex.weight > 1 for ex in train if ex.meta["source"] == "trace")  # a trace copy stays only if harder
    printed = capsys.readouterr().out
    assert "held-out" in printed and str(out) in printed
    assert main(["adapters", "diagnose", str(trace)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps_calibrated"] == 7 and "collision_rate" in summary and "warnings" in summary
    assert main(["adapters", "dataset", "--trace", str(trace), "--out", str(out)]) == 2
    assert "--trace needs --trace-disks" in capsys.readouterr().err


def test_the_adapter_is_a_shapley_module_slot() -> None:
    from mdap.evals.attribution.config import load_config

    path = Path(__file__).parents[2] / "evals" / "data" / "attribution" / "hanoi_adapter.json"
    game = load_config(path).game()
    assert game.slots.names == ["adapter", "sampling"]
    with_adapter = game.factory(game.slots.variants(["adapter", "sampling"])).config(0, ".")
    assert (with_adapter.model, with_adapter.adapter, with_adapter.decorrelate) == ("local", "hanoi", True)
    assert game.factory(game.slots.variants([])).config(0, ".").adapter is None


def test_k_auto_warns_when_calibration_shows_voting_cannot_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["hanoi", "--disks", "4", "--error-rate", "0.45", "--correlation", "0.9", "--k", "auto",
                 "--max-samples", "20", "--run-dir", str(tmp_path), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "steps have p <= 1/2" in err and "collision rate" in err
