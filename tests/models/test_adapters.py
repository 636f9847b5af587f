"""Adapter values and the adapter registry: names, bases, roles, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdap.errors import ConfigError
from mdap.models import Adapter, AdapterRegistry
from mdap.models.adapters import same_base


def _peft(folder: Path, base: str, rank: int = 8) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "r": rank}))
    return folder


def test_from_peft_reads_base_and_rank(tmp_path: Path) -> None:
    adapter = Adapter.from_peft("planner", _peft(tmp_path / "p", "org/base", rank=16))
    assert (adapter.name, adapter.base, adapter.rank) == ("planner", "org/base", 16)
    assert adapter.path == tmp_path / "p"


@pytest.mark.parametrize("name", ["", "has space", "a=b", "-lead", "x/y"])
def test_bad_adapter_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid adapter name"):
        Adapter(name, tmp_path, "org/base")


def test_a_folder_that_is_not_an_adapter_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Adapter.from_peft("a", tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"no adapter_config\.json"):
        Adapter.from_peft("a", tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="names no base_model_name_or_path"):
        Adapter.from_peft("a", tmp_path)


def test_registry_refuses_an_adapter_of_another_base(tmp_path: Path) -> None:
    registry = AdapterRegistry("org/base")
    registry.add(Adapter("good", tmp_path, "org/base"))
    with pytest.raises(
        ConfigError, match=r"'bad' .* trained on 'org/other', but this server's base model is 'org/base'"
    ):
        registry.add(Adapter("bad", tmp_path, "org/other"))
    assert [a.name for a in registry] == ["good"]


def test_same_base_by_name_folder_or_alias(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    assert same_base(str(folder), str(folder) + "/")
    assert same_base(tmp_path / "." / "model", folder)
    assert same_base("HuggingFaceTB/SmolLM2-135M-Instruct", folder, aliases=["HuggingFaceTB/SmolLM2-135M-Instruct"])
    assert not same_base("HuggingFaceTB/SmolLM2-135M-Instruct", folder)


def test_roles_name_adapters_and_switching_is_a_config_change(tmp_path: Path) -> None:
    registry = AdapterRegistry(
        "org/base",
        [Adapter("planner-v1", tmp_path, "org/base"), Adapter("planner-v2", tmp_path, "org/base")],
        roles={"planner": "planner-v1"},
    )
    assert registry.for_role("planner") == "planner-v1"
    assert registry.for_role("worker") is None  # the base model
    registry.assign("planner", "planner-v2")
    assert registry.for_role("planner") == "planner-v2"
    registry.remove("planner-v2")
    assert registry.for_role("planner") is None
    with pytest.raises(ConfigError, match=r"no adapter named 'nope' \(registered: planner-v1\)"):
        registry.assign("worker", "nope")


def test_a_name_is_one_adapter(tmp_path: Path) -> None:
    registry = AdapterRegistry("org/base", [Adapter("a", tmp_path / "one", "org/base")])
    registry.add(Adapter("a", tmp_path / "one", "org/base"))  # the same adapter again is fine
    with pytest.raises(ConfigError, match="already used"):
        registry.add(Adapter("a", tmp_path / "two", "org/base"))
