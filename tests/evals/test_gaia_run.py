"""GAIA end to end on the shipped mini suite: a simulated oracle reaches exactly its known score, the outputs are
in the leaderboard's format, runs resume by skipping finished ids, transport errors are retried, tools really run,
and the CLI prints the summary table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from mdap.cli import main
from mdap.errors import ConfigError, ModelError
from mdap.evals.gaia import (
    MINI_DATA,
    SOLVER_PROMPT,
    GaiaConfig,
    GaiaQuestion,
    load_gaia,
    run_gaia,
    simulated_gaia_model,
)
from mdap.models import ChatModel, Sample, SimulatedModel
from mdap.types import Message

QUESTIONS = load_gaia(MINI_DATA)


class Recording:
    """Wraps a model; records the questions it was asked about and fails on the ones in ``fail``."""

    def __init__(self, inner: ChatModel, fail: Sequence[GaiaQuestion] = ()) -> None:
        self.inner = inner
        self.fail = list(fail)
        self.asked: set[str] = set()

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
    ) -> list[Sample]:
        text = "\n".join(m["content"] for m in messages)
        for q in QUESTIONS:
            if q.question in text:
                self.asked.add(q.task_id)
        if any(q.question in text for q in self.fail):
            raise ModelError("connection refused (simulated)")
        return await self.inner.sample(messages, n=n, temperature=temperature, max_tokens=max_tokens, adapter=adapter)


def _cfg(out: Path, **values: object) -> GaiaConfig:
    return GaiaConfig.build(data=MINI_DATA, out=out, concurrency=4, **values)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_oracle_of_a_subset_scores_exactly_that_fraction(tmp_path: Path) -> None:
    known = {q.task_id for i, q in enumerate(QUESTIONS) if i % 3 != 1}
    model, ids = simulated_gaia_model(QUESTIONS, known=known)
    assert ids == known
    summary = await run_gaia(_cfg(tmp_path), model)
    assert summary.total.questions == len(QUESTIONS) and summary.total.scored == len(QUESTIONS)
    assert summary.total.correct == len(known)
    assert summary.accuracy == pytest.approx(len(known) / len(QUESTIONS))
    for level in summary.levels:
        of_level = [q for q in QUESTIONS if q.level == level.level]
        assert level.questions == len(of_level)
        assert level.correct == sum(1 for q in of_level if q.task_id in known)
    assert summary.errors == {} and summary.skipped == 0

    submission = _lines(tmp_path / "submission.jsonl")
    assert [set(row) for row in submission] == [{"task_id", "model_answer", "reasoning_trace"}] * len(QUESTIONS)
    assert {row["task_id"] for row in submission} == {q.task_id for q in QUESTIONS}
    results = {r["task_id"]: r for r in _lines(tmp_path / "results.jsonl")}
    for q in QUESTIONS:
        r = results[q.task_id]
        assert r["correct"] is (q.task_id in known)
        assert (r["model_answer"] == q.final_answer) is (q.task_id in known)
        assert r["status"] == "ok" and r["subtasks"] == 2 and "[final_answer] answerer" in str(r["reasoning_trace"])
        assert r["tool_calls"] == 1  # acting in code, the solver runs one program (it reads the attachment)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["accuracy"] == summary.accuracy and saved["total"]["correct"] == len(known)
    assert [lv["level"] for lv in saved["levels"]] == [1, 2, 3]


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
async def test_known_fraction(tmp_path: Path, fraction: float) -> None:
    summary = await run_gaia(_cfg(tmp_path, known=fraction, seed=3))
    assert summary.total.correct == round(fraction * len(QUESTIONS))


async def test_voting_corrects_a_noisy_oracle(tmp_path: Path) -> None:
    clean = await run_gaia(_cfg(tmp_path / "clean", k=3))
    noisy = await run_gaia(_cfg(tmp_path / "noisy", k=3, error_rate=0.1, max_samples=30, seed=5))
    assert clean.accuracy == 1.0
    assert noisy.accuracy == 1.0
    assert noisy.usage.samples > clean.usage.samples


async def test_resume_skips_finished_ids(tmp_path: Path) -> None:
    first = await run_gaia(_cfg(tmp_path, limit=10))
    assert first.total.questions == 10
    before = (tmp_path / "results.jsonl").read_text()
    with pytest.raises(ConfigError, match="already holds 10 results: pass --resume"):
        await run_gaia(_cfg(tmp_path))
    model = Recording(simulated_gaia_model(QUESTIONS)[0])
    second = await run_gaia(_cfg(tmp_path, resume=True), model)
    assert second.skipped == 10
    assert model.asked == {q.task_id for q in QUESTIONS[10:]}
    assert (tmp_path / "results.jsonl").read_text().startswith(before)
    assert second.total.questions == len(QUESTIONS) and second.accuracy == 1.0
    assert len(_lines(tmp_path / "submission.jsonl")) == len(QUESTIONS)
    again = Recording(simulated_gaia_model(QUESTIONS)[0])
    third = await run_gaia(_cfg(tmp_path, resume=True), again)
    assert again.asked == set() and third.skipped == len(QUESTIONS)


async def test_a_line_cut_by_a_kill_runs_again(tmp_path: Path) -> None:
    await run_gaia(_cfg(tmp_path, limit=4))
    path = tmp_path / "results.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # the last record, half written
    last = json.loads(text.splitlines()[-1])["task_id"]
    model = Recording(simulated_gaia_model(QUESTIONS)[0])
    summary = await run_gaia(_cfg(tmp_path, limit=4, resume=True), model)
    assert model.asked == {last}
    assert summary.total.questions == 4
    ids = [r["task_id"] for r in _lines(path)]
    assert ids[-1] == last and sorted(ids[:-1]) == sorted(q.task_id for q in QUESTIONS[:4] if q.task_id != last)


async def test_a_cut_inside_a_multibyte_character_and_a_missing_newline(tmp_path: Path) -> None:
    [first] = [q for q in QUESTIONS if "\u00d7" in q.question]  # its record holds a 2-byte UTF-8 character
    others = [q.task_id for q in QUESTIONS[:3] if q.task_id != first.task_id]
    await run_gaia(_cfg(tmp_path, ids=[first.task_id]))
    path = tmp_path / "results.jsonl"
    raw = path.read_bytes()
    path.write_bytes(raw[: raw.index("\u00d7".encode()) + 1])  # killed halfway through the character
    assert (await run_gaia(_cfg(tmp_path, ids=[first.task_id], resume=True))).total.questions == 1
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # a complete last line without its newline
    summary = await run_gaia(_cfg(tmp_path, ids=[first.task_id, *others], resume=True))
    assert summary.skipped == 1 and summary.total.questions == 3
    assert [r["task_id"] for r in _lines(path)] == [first.task_id, *others]


async def test_a_corrupt_result_line_is_named(tmp_path: Path) -> None:
    await run_gaia(_cfg(tmp_path, limit=3))
    path = tmp_path / "results.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), "level": "high"})
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"results.jsonl line 2, field 'level'"):
        await run_gaia(_cfg(tmp_path, resume=True))


async def test_resume_refuses_another_split(tmp_path: Path) -> None:
    await run_gaia(_cfg(tmp_path, limit=1))
    data = tmp_path / "data"
    folder = data / "2023" / "test"
    folder.mkdir(parents=True)
    (folder / "metadata.jsonl").write_text(
        json.dumps({"task_id": "x", "Question": "q?", "Level": 1, "Final answer": "?", "file_name": ""}) + "\n"
    )
    with pytest.raises(ConfigError, match="holds a run of 'validation'"):
        await run_gaia(GaiaConfig.build(data=data, split="test", out=tmp_path, resume=True))


async def test_transport_errors_are_not_recorded_and_retried_on_resume(tmp_path: Path) -> None:
    broken = QUESTIONS[2]
    model = Recording(simulated_gaia_model(QUESTIONS)[0], fail=[broken])
    summary = await run_gaia(_cfg(tmp_path, limit=5), model)
    assert list(summary.errors) == [broken.task_id] and "connection refused" in summary.errors[broken.task_id]
    assert summary.total.questions == 4
    healed = Recording(simulated_gaia_model(QUESTIONS)[0])
    summary = await run_gaia(_cfg(tmp_path, limit=5, resume=True), healed)
    assert healed.asked == {broken.task_id} and summary.errors == {}
    assert summary.total.questions == 5 and summary.accuracy == 1.0


async def test_tools_really_run_and_a_bad_plan_falls_back(tmp_path: Path) -> None:
    """A model that plans garbage, computes with the python tool on the attachment, and answers from its output."""
    [q] = [q for q in QUESTIONS if q.file_name == "regional_sales_2022.csv" and "North" in q.question]
    code = (
        "import csv\n"
        "print(sum(int(r['units']) for r in csv.DictReader(open('regional_sales_2022.csv')) if r['region'] == 'North'))"
    )

    def oracle(messages: Sequence[Message]) -> str:
        system, last = messages[0]["content"], messages[-1]["content"]
        if system.startswith("You are the planner"):
            return "I would rather not plan."
        if system.startswith(SOLVER_PROMPT[:40]):
            if last.startswith("Tool results:"):
                output = json.loads(last.splitlines()[1])["content"].strip()
                return json.dumps({"answer": f"North sold {output} units"})
            call = {"name": "python", "arguments": json.dumps({"code": code})}
            return json.dumps({"tool_calls": [{"id": "c", "type": "function", "function": call}]})
        number = last.split("North sold ")[1].split(" units")[0]
        return f"The solver found it.\nFINAL ANSWER: {number}"

    summary = await run_gaia(_cfg(tmp_path, ids=[q.task_id], max_tool_rounds=2), SimulatedModel(oracle))
    [r] = _lines(tmp_path / "results.jsonl")
    assert summary.accuracy == 1.0 and r["model_answer"] == q.final_answer
    assert r["tool_calls"] == 1 and r["subtasks"] == 2
    assert str(r["plan_notes"]).startswith("fixed plan: the planner model gave no valid plan")


def test_cli_runs_the_mini_suite_and_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["bench", "gaia", "--data", "mini", "--known", "0.5", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0
    half = len(QUESTIONS) // 2
    assert f"all{len(QUESTIONS):>14}{len(QUESTIONS):>10}{half:>9}{'50.0%':>10}" in text
    assert json.loads((out / "summary.json").read_text())["accuracy"] == 0.5
    code = main(
        ["bench", "gaia", "--data", str(MINI_DATA), "--level", "3", "--out", str(tmp_path / "l3"), "--no-progress"]
    )
    assert code == 0
    assert [r["level"] for r in _lines(tmp_path / "l3" / "results.jsonl")] == [3, 3, 3]


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for flag, value in (("--data", str(tmp_path / "nowhere")), ("--known", "2")):  # argparse refuses these
        with pytest.raises(SystemExit) as stop:
            main(["bench", "gaia", "--data", "mini", flag, value, "--out", str(tmp_path / "o")])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {flag}" in err and value in err
    assert main(["bench", "gaia", "--data", "mini", "--model", "gpt-5", "--out", str(tmp_path / "o")]) == 2
    assert "unknown model 'gpt-5'" in capsys.readouterr().err
