"""GAIA with the real embedded model (SmolLM2-135M on the CPU vLLM server, `--model local`): one mini question
through the default pipeline, end to end from the CLI. Any score will do; the run must complete and record it.
`--model local` finds the test session's server through $MDAP_LOCAL_URL (tests/conftest.py), so no second server
starts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mdap.cli import main
from mdap.evals.gaia import MINI_DATA, load_gaia, score
from mdap.models.local import LOCAL_URL_ENV


def test_local_model_completes_a_gaia_run(
    local_model_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert os.environ[LOCAL_URL_ENV] == local_model_url  # what `--model local` connects to
    [q] = [q for q in load_gaia(MINI_DATA) if q.question.startswith("How many seconds are there in 3 days")]
    out = tmp_path / "run"
    args = ["bench", "gaia", "--data", "mini", "--model", "local", "--ids", q.task_id, "--out", str(out)]
    code = main([*args, "--max-tokens", "128", "--max-samples", "3", "--max-tool-rounds", "2", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    [result] = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert result["task_id"] == q.task_id and result["status"] in ("ok", "partial", "failed")
    assert result["samples"] > 0 and result["completion_tokens"] > 0  # the real model was asked
    assert result["correct"] is score(result["model_answer"], q.final_answer)
    [row] = [json.loads(line) for line in (out / "submission.jsonl").read_text().splitlines()]
    assert row["task_id"] == q.task_id and row["model_answer"] == result["model_answer"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total"]["questions"] == 1 and summary["model"] == "local"
    assert "all" in printed
    # Resuming a finished run asks nothing of the model (no server is started) and skips the question.
    assert main([*args, "--resume", "--no-progress"]) == 0
    assert "skipped 1 finished" in capsys.readouterr().out
