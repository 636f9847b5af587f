"""The executor: verified runs, failures in the report, checkpoints and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runtime_helpers import Crashing

from mdap import CheckpointError, Executor, FirstToAheadByK
from mdap.evals.hanoi import hanoi_chain, simulated_hanoi_model


def read_trace(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_verified_run_reports_what_happened(tmp_path: Path) -> None:
    chain = hanoi_chain(8)
    model = simulated_hanoi_model(error_rate=0.05, red_flag_rate=0.05, seed=1)
    trace = tmp_path / "trace.jsonl"
    report = await Executor(model, FirstToAheadByK(k=3), trace=trace).run(chain)
    assert report.completed and report.ok
    assert report.steps == report.total_steps == 255
    assert report.verifier_errors == 0
    assert report.usage.samples == model.samples_drawn
    assert sum(report.usage.red_flags.values()) > 0
    lines = read_trace(trace)
    assert [line["step"] for line in lines] == list(range(255))
    assert sum(line["samples"] for line in lines) == report.usage.samples  # type: ignore[misc]
    assert lines[0]["answer"] == {"move": [1, 0, 1], "next_state": [list(range(8, 1, -1)), [1], []]}


async def test_verifier_errors_are_counted_not_hidden() -> None:
    # k=1 with fully correlated 30% errors: wrong moves get decided and the verifier must catch them
    model = simulated_hanoi_model(error_rate=0.3, correlation=1.0, seed=2)
    report = await Executor(model, FirstToAheadByK(k=1)).run(hanoi_chain(5))
    assert report.verifier_errors is not None and report.verifier_errors > 0
    assert report.first_error_step is not None
    assert report.error_messages and report.error_messages[0].startswith(f"step {report.first_error_step}:")
    assert not report.ok


async def test_stop_on_error_stops_at_the_first_rejected_step() -> None:
    model = simulated_hanoi_model(error_rate=0.3, correlation=1.0, seed=2)
    report = await Executor(model, FirstToAheadByK(k=1), stop_on_error=True).run(hanoi_chain(5))
    assert report.verifier_errors == 1
    assert report.steps == report.first_error_step + 1  # type: ignore[operator]
    assert not report.completed


async def test_an_undecidable_step_ends_the_run_with_the_tally() -> None:
    model = simulated_hanoi_model(error_rate=0.0, red_flag_rate=1.0, seed=3)
    report = await Executor(model, FirstToAheadByK(k=2, max_samples=8)).run(hanoi_chain(3))
    assert not report.completed
    assert report.steps == 0
    assert report.failure is not None and report.failure.startswith("step 0:")
    assert report.failure_tally == {}
    assert report.usage.red_flags and sum(report.usage.red_flags.values()) == 8


async def test_k_auto_calibrates_k_from_the_model() -> None:
    good = await Executor(simulated_hanoi_model(error_rate=0.01, seed=4), FirstToAheadByK(k="auto")).run(hanoi_chain(6))
    bad = await Executor(simulated_hanoi_model(error_rate=0.3, seed=4), FirstToAheadByK(k="auto")).run(hanoi_chain(6))
    assert good.ok and bad.ok
    assert good.k is not None and bad.k is not None and good.k < bad.k
    assert good.calibration is not None and good.calibration["k"] == good.k
    assert 0.95 < good.calibration["p"] <= 1.0
    assert good.expected_samples_per_step is not None


async def test_resume_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    chain = hanoi_chain(9)  # 511 steps
    ckpt, trace = tmp_path / "ckpt.json", tmp_path / "trace.jsonl"
    crashing = Crashing(simulated_hanoi_model(error_rate=0.02, seed=5), calls=300)
    executor = Executor(crashing, FirstToAheadByK(k=2), checkpoint=ckpt, checkpoint_every=64, trace=trace)
    with pytest.raises(KeyboardInterrupt):
        await executor.run(chain)
    saved = json.loads(ckpt.read_text())
    assert saved["next_step"] > 0 and saved["next_step"] % 64 == 0
    assert len(read_trace(trace)) >= saved["next_step"]  # the trace ran past the checkpoint before the crash

    model = simulated_hanoi_model(error_rate=0.02, seed=6)
    resumed = Executor(model, FirstToAheadByK(k=2), checkpoint=ckpt, checkpoint_every=64, trace=trace)
    report = await resumed.run(chain, resume=True)
    assert report.resumed_from == saved["next_step"]
    assert report.completed and report.verifier_errors == 0
    assert [line["step"] for line in read_trace(trace)] == list(range(511))  # every step exactly once
    assert report.usage.samples == saved["counters"]["samples"] + model.samples_drawn
    assert model.samples_drawn < 511 * 3  # only the remaining steps were sampled again


async def test_resume_refuses_missing_foreign_or_broken_files(tmp_path: Path) -> None:
    ckpt, trace = tmp_path / "ckpt.json", tmp_path / "trace.jsonl"
    model = simulated_hanoi_model(seed=7)

    def executor() -> Executor:  # type: ignore[type-arg]
        return Executor(model, FirstToAheadByK(k=1), checkpoint=ckpt, checkpoint_every=2, trace=trace)

    with pytest.raises(CheckpointError, match="no checkpoint"):
        await executor().run(hanoi_chain(3), resume=True)
    await executor().run(hanoi_chain(3))
    with pytest.raises(CheckpointError, match="hanoi:3"):
        await executor().run(hanoi_chain(4), resume=True)
    trace.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="trace"):
        await executor().run(hanoi_chain(3), resume=True)
    ckpt.write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        await executor().run(hanoi_chain(3), resume=True)
