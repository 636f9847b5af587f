"""The registry of step kinds a worker can run, filled by the layers above the runtime.

A pool runs the work it is handed: a step names its kind (``"hanoi"``) and parameters (``{"disks": 10}``),
and the worker asks this registry for a :class:`StepKind` -- the microstep that parses and dumps the answers,
and, for ``--model simulated``, the task's simulated model. The pool never imports agents/ or evals/; they
register their kinds here (e.g. ``mdap.evals.hanoi.register_pool_kinds``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mdap.errors import ConfigError
from mdap.microstep import Microstep
from mdap.models import ChatModel

__all__ = ["KINDS", "KindRegistry", "SimulatedSettings", "StepKind", "StepKindFactory"]


@dataclass(frozen=True, slots=True)
class SimulatedSettings:
    """A worker's ``--model simulated`` flags: the per-sample error model of the task's simulated model."""

    error_rate: float = 0.0
    red_flag_rate: float = 0.0
    correlation: float = 0.0
    latency_s: float = 0.0
    seed: int = 0


@dataclass(frozen=True, slots=True)
class StepKind:
    """What a worker needs to run steps of one kind.

    Args:
        microstep: parses samples into answers and dumps the decided answer for the wire (microstep kinds).
        simulated: builds the task's simulated model (its oracle knows the right answers); None if the kind
            has none, so ``--model simulated`` cannot serve it.
        work: runs a whole JSON-able work item and returns its JSON-able output (work kinds, e.g. a pipeline
            subtask with its own model, voter and tools); an MdapError it raises is the item's failure.
    """

    microstep: Microstep[Any, Any] | None = None
    simulated: Callable[[SimulatedSettings], ChatModel] | None = None
    work: Callable[[Mapping[str, Any]], Awaitable[Mapping[str, Any]]] | None = None


StepKindFactory = Callable[[Mapping[str, Any]], StepKind]
"""Builds the StepKind for a step's parameters; raises ConfigError on bad parameters."""


class KindRegistry:
    """Step kinds by name; resolved kinds are cached per parameters."""

    def __init__(self) -> None:
        self._factories: dict[str, StepKindFactory] = {}
        self._cache: dict[tuple[str, str], StepKind] = {}

    def register(self, name: str, factory: StepKindFactory) -> None:
        """Register (or replace) the factory of kind ``name``."""
        if not name or ":" in name:
            raise ConfigError(f"a step kind name must be a non-empty word without ':', got {name!r}")
        self._factories[name] = factory
        self._cache = {key: kind for key, kind in self._cache.items() if key[0] != name}

    def names(self) -> list[str]:
        """The registered kind names, sorted."""
        return sorted(self._factories)

    def resolve(self, name: str, params: Mapping[str, Any]) -> StepKind:
        """The StepKind ``name`` builds for ``params``.

        Raises:
            ConfigError: an unknown kind, or parameters the kind rejects.
        """
        key = (name, json.dumps(params, sort_keys=True))
        kind = self._cache.get(key)
        if kind is not None:
            return kind
        factory = self._factories.get(name)
        if factory is None:
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"unknown step kind {name!r} (this worker knows: {known}); register it first")
        kind = factory(params)
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = kind
        return kind


KINDS = KindRegistry()
"""The default registry ``mdap worker`` resolves kinds from."""
