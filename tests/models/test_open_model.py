"""open_model: the model specs of the command line ('simulated', 'local', server URLs), their errors, and closing."""

from __future__ import annotations

from pathlib import Path

import pytest

import mdap.models.local
from mdap.errors import ConfigError
from mdap.models import LocalModel, OpenAICompatible, SimulatedModel, open_model


async def test_a_url_is_an_openai_compatible_client_closed_on_exit() -> None:
    async with open_model("http://127.0.0.1:8000/v1", model_name="m", adapter="planner") as model:
        assert isinstance(model, OpenAICompatible)
        assert (model.base_url, model.model, model.adapter) == ("http://127.0.0.1:8000/v1", "m", "planner")
        closed: list[bool] = []
        real = model.aclose

        async def aclose() -> None:
            closed.append(True)
            await real()

        model.aclose = aclose  # type: ignore[method-assign]
    assert closed == [True]


async def test_simulated_is_built_by_the_task_and_refused_without_one() -> None:
    built = SimulatedModel(lambda messages: "x")
    async with open_model("simulated", simulated=lambda: built) as model:
        assert model is built
    with pytest.raises(ConfigError, match="simulated model needs a task"):
        async with open_model("simulated"):
            pass


async def test_a_built_model_is_passed_through() -> None:
    built = SimulatedModel(lambda messages: "x")
    async with open_model(built) as model:
        assert model is built


def _not_started(monkeypatch: pytest.MonkeyPatch) -> list[LocalModel]:
    """LocalModel as if installed, entering and leaving its context without a server; returns those entered."""
    monkeypatch.setattr(mdap.models.local, "_NEEDED", {})
    entered: list[LocalModel] = []

    async def start(self: LocalModel) -> LocalModel:
        entered.append(self)
        return self

    async def stop(self: LocalModel) -> None:
        return None

    monkeypatch.setattr(LocalModel, "start", start)
    monkeypatch.setattr(LocalModel, "stop", stop)
    return entered


async def test_local_is_the_embedded_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MDAP_LOCAL_URL", raising=False)
    entered = _not_started(monkeypatch)
    async with open_model("local") as model:
        assert isinstance(model, LocalModel) and model.adapter is None and model.shared_url is None
    assert entered == [model]


async def test_local_with_an_adapter_serves_it_from_the_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MDAP_LOCAL_URL", raising=False)
    monkeypatch.setenv("MDAP_CACHE_DIR", str(tmp_path))
    _not_started(monkeypatch)
    with pytest.raises(ConfigError, match="no adapter 'a' at"):
        async with open_model("local", adapter="a"):
            pass
    monkeypatch.setenv("MDAP_LOCAL_URL", "http://127.0.0.1:9/v1")  # a shared server serves it by name
    async with open_model("local", adapter="a") as model:
        assert isinstance(model, LocalModel) and model.adapter == "a" and model.adapters is None


async def test_local_without_its_packages_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MDAP_LOCAL_URL", raising=False)
    monkeypatch.setattr(mdap.models.local, "_NEEDED", {"no_such_module_mdap": "no-such-package"})
    with pytest.raises(ConfigError, match=r"needs no-such-package.*pip install 'mdap\[local\]'"):
        async with open_model("local"):
            pass


async def test_an_unknown_spec_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"use 'simulated', 'local', 'local:PATH' .*, or the http"):
        async with open_model("gpt-9"):
            pass
