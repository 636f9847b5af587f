"""Model backends: the ChatModel protocol, the Sample it returns, and the simulated backend.

Heavy backends (OpenAI-compatible servers, vLLM) import lazily so ``import mdap`` stays light.
"""

from __future__ import annotations

from .base import ChatModel, Sample
from .scripted import ModelCall, ScriptedModel
from .simulated import Oracle, SimulatedModel, WrongAnswer, perturb_digit

__all__ = [
    "ChatModel",
    "ModelCall",
    "Oracle",
    "Sample",
    "ScriptedModel",
    "SimulatedModel",
    "WrongAnswer",
    "perturb_digit",
]
