"""The Hanoi step kind for pool workers: ``mdap worker --role hanoi`` rebuilds Hanoi steps from it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mdap.errors import ConfigError
from mdap.models import ChatModel
from mdap.pool.kinds import KINDS, KindRegistry, SimulatedSettings, StepKind

from .solver import simulated_hanoi_model
from .task import HanoiStep

__all__ = ["HANOI_KIND", "hanoi_kind", "register_pool_kinds"]

HANOI_KIND = "hanoi"
"""The kind name of Hanoi steps (and the default role of their stream)."""


def _simulated(settings: SimulatedSettings) -> ChatModel:
    return simulated_hanoi_model(
        error_rate=settings.error_rate,
        red_flag_rate=settings.red_flag_rate,
        correlation=settings.correlation,
        latency_s=settings.latency_s,
        seed=settings.seed,
    )


def hanoi_kind(params: Mapping[str, Any]) -> StepKind:
    """The StepKind of ``{"disks": N}``: HanoiStep(N) and the simulated Hanoi model.

    Raises:
        ConfigError: ``disks`` missing or not a positive integer.
    """
    disks = params.get("disks")
    if not isinstance(disks, int) or isinstance(disks, bool):
        raise ConfigError(f"hanoi steps need an integer 'disks' parameter, got {dict(params)!r}")
    return StepKind(HanoiStep(disks), _simulated)


def register_pool_kinds(registry: KindRegistry = KINDS) -> None:
    """Register the Hanoi kind in ``registry`` (the default registry ``mdap worker`` uses)."""
    registry.register(HANOI_KIND, hanoi_kind)
