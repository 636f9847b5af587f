"""LocalModel takes the request options of the worker protocol (native tools, structured outputs) and says, like
OpenAICompatible, whether its server takes them: unknown (tried on first use) until its client knows."""

from __future__ import annotations

import inspect

from mdap.models import LocalModel, OpenAICompatible
from mdap.models.options import supports


def test_a_local_model_is_asked_for_native_tools_and_schemas() -> None:
    model = LocalModel()
    assert model.native_tools is None and model.structured_outputs is None  # not known before it starts
    assert supports(model, "native_tools") and supports(model, "structured_outputs")


def test_a_local_model_passes_every_option_of_its_client() -> None:
    local = set(inspect.signature(LocalModel.sample).parameters)
    client = set(inspect.signature(OpenAICompatible.sample).parameters)
    assert {"tools", "tool_choice", "response_format"} <= local
    assert client <= local
