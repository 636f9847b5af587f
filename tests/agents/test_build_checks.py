"""A role's voter is checked when the pipeline is built (issue 18, item 2): ``k="auto"`` used to be accepted by
``.role()`` and fail after planning, inside the graph's execute node; now ``.role()`` refuses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdap.agents import Pipeline, WorkerRole
from mdap.agents.config import PipelineConfig
from mdap.errors import ConfigError
from mdap.models import ScriptedModel
from mdap.voters import FirstToAheadByK, Majority, VoterSpec


def test_k_auto_is_refused_at_role_naming_the_role_and_what_to_use() -> None:
    pipeline = Pipeline(model=ScriptedModel([]))
    with pytest.raises(ConfigError, match=r"role 'researcher': k='auto' is not calibrated") as info:
        pipeline.role("researcher", voter=FirstToAheadByK(k="auto"))
    assert "FirstToAheadByK(k=3)" in str(info.value) and "k_min" in str(info.value)
    with pytest.raises(ConfigError, match="role 'maker'"):
        WorkerRole("maker", voter=FirstToAheadByK.maker(k="auto"))
    assert pipeline.roles == ()


def test_k_auto_in_a_roles_file_is_refused_when_the_pipeline_is_built(tmp_path: Path) -> None:
    config = PipelineConfig.model_validate(
        {"roles": {"solver": {"voter": VoterSpec(k="auto").model_dump()}}, "workspace": str(tmp_path)}
    )
    with pytest.raises(ConfigError, match="role 'solver': k='auto'"):
        config.build(ScriptedModel([]))


def test_something_that_is_no_voter_is_refused_at_role() -> None:
    with pytest.raises(ConfigError, match=r"role 'w': voter must have decide"):
        Pipeline().role("w", voter=object())


def test_integer_margins_and_other_voters_pass() -> None:
    pipeline = Pipeline(model=ScriptedModel([])).role("a", voter=FirstToAheadByK(k=2)).role("b", voter=Majority(n=3))
    assert [r.name for r in pipeline.roles] == ["a", "b"]
