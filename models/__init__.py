"""Model backends: the ChatModel protocol and Sample, OpenAI-compatible servers, vLLM serving with LoRA adapters,
the embedded local model, and the simulated and scripted backends.

The backends import their heavy packages (openai, vllm, torch, transformers) only when used, so ``import mdap``
stays light.
"""

from __future__ import annotations

from .adapters import Adapter, AdapterRegistry
from .base import ChatModel, Sample
from .factory import SIMULATED, open_model
from .local import LocalModel
from .openai_compat import OpenAICompatible
from .options import json_schema_format, supports, with_options
from .pricing import Price
from .scripted import ModelCall, ScriptedModel
from .simulated import Oracle, SimulatedModel, WrongAnswer, perturb_digit
from .vllm_server import VLLMServer

__all__ = [
    "SIMULATED",
    "Adapter",
    "AdapterRegistry",
    "ChatModel",
    "LocalModel",
    "ModelCall",
    "OpenAICompatible",
    "Oracle",
    "Price",
    "Sample",
    "ScriptedModel",
    "SimulatedModel",
    "VLLMServer",
    "WrongAnswer",
    "json_schema_format",
    "open_model",
    "perturb_digit",
    "supports",
    "with_options",
]
