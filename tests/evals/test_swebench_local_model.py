"""The SWE-bench runner with the real local model (SmolLM2-135M on the CPU vLLM server): any score, it must
complete and write every output. It shares the test session's server (``local_model_url`` sets $MDAP_LOCAL_URL)."""

from __future__ import annotations

import json
from pathlib import Path

from mdap.evals.swebench import PipelineOptions, build_mini, load_predictions, run_swebench
from mdap.models import LocalModel


async def test_a_run_with_the_local_model_completes(tmp_path: Path, local_model_url: str) -> None:
    suite = build_mini(tmp_path / "mini")
    inst = next(i for i in suite.instances if i.name == "tinystats")
    options = PipelineOptions(
        candidates=2,
        k=1,
        temperature=0.7,
        max_samples=2,
        max_tokens=96,
        max_tool_rounds=1,
        retries=0,
        subtask_timeout_s=300.0,
        test_timeout_s=60.0,
    )
    out = tmp_path / "run"
    async with LocalModel(client_options={"timeout": 120.0, "max_retries": 1}) as model:
        summary, report = await run_swebench(
            [inst], suite.repos, out, model, model_name="mdap-local", options=options, progress=False
        )
    assert summary.finished == 1 and summary.graded == 1
    assert summary.samples > 0  # the model was really asked
    assert report is not None and report.submitted_ids == [inst.instance_id]
    assert set(report.resolved_ids) | set(report.unresolved_ids) == {inst.instance_id}
    preds = load_predictions(out / "predictions.jsonl")
    assert preds[inst.instance_id].model_name_or_path == "mdap-local"
    traj = json.loads((out / "trajectories" / f"{inst.instance_id}.json").read_text())
    assert traj["status"] in ("ok", "partial", "failed")
    assert set(traj["modules"]) >= {"test_template", "reproduce", "localize", "fix0", "fix1"}
    assert traj["report"]["samples"] == summary.samples
