"""End to end with a real model: the embedded SmolLM2-135M (CPU vLLM server) runs a fork/join pipeline.

It shares the test session's server: ``_local_session`` starts it once and sets $MDAP_LOCAL_URL, which
``LocalModel()`` then uses instead of starting its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio

from mdap.agents import Pipeline
from mdap.models import LocalModel, Sample
from mdap.planners import StaticPlanner, fork_join
from mdap.types import Message
from mdap.voters import FirstToAheadByK


class Recording:
    """Records every prompt sent to the wrapped model."""

    def __init__(self, model: LocalModel) -> None:
        self.model = model
        self.prompts: list[list[Message]] = []

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
    ) -> list[Sample]:
        self.prompts.append(list(messages))
        return await self.model.sample(messages, n=n, temperature=temperature, max_tokens=max_tokens, adapter=adapter)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def local(_local_session: LocalModel) -> AsyncIterator[LocalModel]:
    async with LocalModel(client_options={"timeout": 120.0, "max_retries": 1}) as model:
        yield model


@pytest.mark.asyncio(loop_scope="module")
async def test_fork_join_pipeline_on_the_local_model(local: LocalModel) -> None:
    model = Recording(local)
    plan = fork_join(
        ["What color is the sky on a clear day? One word.", "What color is grass? One word."],
        worker="answerer",
        join="Combine the two answers into one short sentence.",
    )
    pipeline = (
        Pipeline("local-e2e", model=model)
        .planner(StaticPlanner(plan))
        .role("answerer", voter=FirstToAheadByK(k=1, temperature=0.0, max_samples=3, max_tokens=24))
        .policy(max_concurrency=2, retries=1, backoff_s=0.1, max_replans=0)
        .checkpoint(None)
    )
    result = await pipeline.run("colors")
    assert result.status == "ok", result.error
    assert all(r.answer for r in result.results.values())
    assert result.answer == result.results["join"].answer
    join_prompt = next(p for p in model.prompts if "Combine the two answers" in p[-1]["content"])[-1]["content"]
    for part in ("part0", "part1"):
        assert f"[{part}] {result.results[part].answer[:20]}" in join_prompt  # dependency artifacts reach the join
    report = result.report
    assert report.usage.samples == 3
    assert report.usage.completion_tokens > 0 and report.usage.prompt_tokens > 0
    assert report.usage.model_seconds > 0
    assert report.modules["answerer"].steps == 3
