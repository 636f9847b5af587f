"""VoterSpec: one voter schema for roles files, the pool's wire and benchmark configs; old names refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdap.agents.config import load_config
from mdap.errors import ConfigError
from mdap.models import SimulatedModel
from mdap.voters import FirstToAheadByK, Majority, RedFlagPolicy, Spread, VoterSpec


def test_the_default_is_a_roles_file_voter() -> None:
    assert VoterSpec().build() == FirstToAheadByK(k=2, temperature=0.3, max_samples=20)
    assert VoterSpec(kind="majority").build(adapter="lora") == Majority(
        n=3, temperature=0.3, max_samples=20, adapter="lora"
    )


@pytest.mark.parametrize(
    "voter",
    [
        FirstToAheadByK(k=4, temperature=0.3, first_temperature=0.0, max_samples=40, adapter="a", target=0.9),
        FirstToAheadByK(k=2, red_flags=RedFlagPolicy(max_completion_tokens=None, flag_truncated=False)),
        Majority(n=7, temperature=0.5, max_tokens=64),
    ],
)
def test_a_voter_round_trips_through_json(voter: FirstToAheadByK | Majority) -> None:
    assert VoterSpec.model_validate_json(VoterSpec.of(voter).model_dump_json()).build() == voter


def test_a_spec_names_its_own_adapter_over_the_roles() -> None:
    assert VoterSpec(adapter="mine").build(adapter="role's").adapter == "mine"
    assert VoterSpec().build(adapter="role's").adapter == "role's"


def test_what_cannot_travel_is_refused() -> None:
    with pytest.raises(ConfigError, match="k='auto' must be resolved"):
        VoterSpec.of(FirstToAheadByK(k="auto"))
    with pytest.raises(ConfigError, match="spread"):
        VoterSpec.of(FirstToAheadByK(k=2, spread=Spread()))
    with pytest.raises(ConfigError, match="spread"):
        VoterSpec(kind="majority").build(spread=Spread())


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"bad voter: k: "):
        VoterSpec.parse({"k": 0})
    with pytest.raises(ConfigError, match=r"red_flags: .*max_completion_tokens must be >= 1"):
        VoterSpec.parse({"red_flags": {"max_completion_tokens": 0}})
    with pytest.raises(ConfigError, match=r"max_samples .* must be at least k"):
        VoterSpec(k=30).build()


def test_old_names_are_refused_with_the_new_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kind 'ahead_by_k' was renamed to 'first_to_ahead_by_k'"):
        VoterSpec.parse({"kind": "ahead_by_k", "k": 2})
    with pytest.raises(ConfigError, match="'type' was renamed to 'kind'"):
        VoterSpec.parse({"type": "majority", "config": {"n": 3}})
    roles = tmp_path / "roles.json"
    roles.write_text('{"roles": [{"name": "w", "voter": {"kind": "ahead_by_k", "k": 2}}]}')
    with pytest.raises(ConfigError, match="kind 'ahead_by_k' was renamed to 'first_to_ahead_by_k'"):
        load_config(roles)


def test_a_roles_file_builds_its_voters(tmp_path: Path) -> None:
    roles = tmp_path / "roles.json"
    roles.write_text(
        '{"roles": [{"name": "a", "adapter": "lora-a", "voter": {"kind": "first_to_ahead_by_k", "k": 3}},'
        ' {"name": "b", "voter": {"kind": "majority", "n": 5}}]}'
    )
    pipeline = load_config(roles).build(SimulatedModel(lambda messages: "x"), base=tmp_path)
    voters = {role.name: role.voter for role in pipeline.roles}
    assert voters["a"] == FirstToAheadByK(k=3, temperature=0.3, max_samples=20, adapter="lora-a")
    assert voters["b"] == Majority(n=5, temperature=0.3, max_samples=20)
