"""The attribution game over a pipeline: named module slots, a pipeline factory, a benchmark and a scorer.

A pipeline is made of modules (planner, coordinator policy, each worker's model/adapter, the voter). Each
module *slot* has a default and a test variant. For a coalition ``S`` of slots, the factory builds the
pipeline whose slots in ``S`` use their test variant and the rest their default; ``v(S)`` is the mean score
of that pipeline over the benchmark's items, for one seed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from mdap.errors import ConfigError

__all__ = ["MISSING", "Factory", "Game", "ModuleSlots", "Scorer", "Slot"]

P = TypeVar("P")
I = TypeVar("I")  # noqa: E741 - the benchmark item type


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Marks a variant that was not given (``None`` is a valid variant: e.g. "no planner")."""

Factory = Callable[[dict[str, Any]], P]
"""Builds the pipeline for a coalition from ``{slot: variant}`` (test variants for members, defaults otherwise)."""

Scorer = Callable[[P, I, int], "float | Awaitable[float]"]
"""Scores a pipeline on one benchmark item with a seed; sync or async; higher is better."""


@dataclass(frozen=True, slots=True)
class Slot:
    """A module slot: its name and its two variants (any value: a model + adapter, a voter config, a planner).

    Raises:
        ConfigError: an empty name, or a variant missing.
    """

    name: str
    default: Any = MISSING
    test: Any = MISSING

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"a slot needs a non-empty name, got {self.name!r}")
        missing = [kind for kind in ("default", "test") if getattr(self, kind) is MISSING]
        if missing:
            raise ConfigError(
                f"slot {self.name!r} has no {' and no '.join(missing)} variant; "
                "every slot needs a 'default' and a 'test' variant"
            )


class ModuleSlots:
    """The ordered, named slots of a pipeline; the players of the attribution game.

    Args:
        slots: the slots, in the order reports list them.

    Raises:
        ConfigError: no slots, or a name used twice.
    """

    def __init__(self, slots: Iterable[Slot]) -> None:
        self.slots = tuple(slots)
        if not self.slots:
            raise ConfigError("an attribution needs at least one slot")
        names = [s.name for s in self.slots]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"slot names must be distinct; given more than once: {', '.join(dupes)}")
        self._by_name = {s.name: s for s in self.slots}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> ModuleSlots:
        """Slots from ``{name: {"default": x, "test": y}}`` (or ``{name: (x, y)}``).

        Raises:
            ConfigError: a slot that is not such a pair, with an unknown key, or without one of its variants.
        """
        slots = []
        for name, variants in spec.items():
            if isinstance(variants, Mapping):
                extra = sorted(set(variants) - {"default", "test"})
                if extra:
                    raise ConfigError(f"slot {name!r}: unknown keys {extra}; a slot has 'default' and 'test'")
                slots.append(Slot(name, variants.get("default", MISSING), variants.get("test", MISSING)))
            elif isinstance(variants, tuple | list) and len(variants) == 2:
                slots.append(Slot(name, variants[0], variants[1]))
            else:
                raise ConfigError(
                    f"slot {name!r} must be {{'default': ..., 'test': ...}} or a (default, test) pair, got {variants!r}"
                )
        return cls(slots)

    @property
    def names(self) -> list[str]:
        """The slot names, in order."""
        return [s.name for s in self.slots]

    def variants(self, coalition: Iterable[str]) -> dict[str, Any]:
        """``{slot: variant}``: the test variant for slots in ``coalition``, the default for the rest.

        Raises:
            ConfigError: ``coalition`` names a slot that does not exist.
        """
        members = set(coalition)
        unknown = sorted(members - set(self._by_name))
        if unknown:
            raise ConfigError(f"unknown slots {unknown}; the slots are {self.names}")
        return {s.name: (s.test if s.name in members else s.default) for s in self.slots}

    def __len__(self) -> int:
        return len(self.slots)


@dataclass
class Game(Generic[P, I]):
    """What an attribution runs: slots, how to build a pipeline per coalition, and how to score it.

    ``v(S)`` for one seed is the mean of ``scorer(factory(slots.variants(S)), item, seed)`` over the items of
    ``benchmark``; each seed in ``seeds`` is one replicate, and the spread over replicates gives the
    confidence intervals.

    Attributes:
        slots: the module slots (the players).
        factory: builds the pipeline for a coalition's variants (called once per coalition and seed).
        scorer: scores a pipeline on one benchmark item with a seed (sync or async).
        benchmark: the items every coalition is scored on.
        seeds: one replicate per seed.
        name: shown in reports.
        fingerprint: identity of the game for the on-disk score cache; by default a hash of the name, the
            slots' variants and the benchmark items (their ``repr``) - set it when those reprs are not stable.

    Raises:
        ConfigError: an empty benchmark, no seeds, or a seed given twice.
    """

    slots: ModuleSlots
    factory: Factory[P]
    scorer: Scorer[P, I]
    benchmark: Sequence[I]
    seeds: Sequence[int] = (0,)
    name: str = "attribution"
    fingerprint: str | None = field(default=None)

    def __post_init__(self) -> None:
        if len(self.benchmark) == 0:
            raise ConfigError(f"the benchmark of {self.name!r} is empty; give it at least one item to score")
        self.seeds = list(self.seeds)
        if not self.seeds:
            raise ConfigError("give at least one seed (each seed is one replicate of every coalition)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct, got {self.seeds}")

    @property
    def players(self) -> list[str]:
        """The slot names: the players of the game."""
        return self.slots.names

    def identity(self) -> str:
        """The fingerprint the score cache checks before reusing scores."""
        if self.fingerprint is not None:
            return self.fingerprint
        spec = {
            "name": self.name,
            "slots": [[s.name, repr(s.default), repr(s.test)] for s in self.slots.slots],
            "benchmark": [repr(item) for item in self.benchmark],
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
