"""The Hanoi attribution game: which part of the MAKER pipeline (voter, red flags, model) earns the score.

Each slot's variants are dicts of :class:`~mdap.evals.hanoi.HanoiConfig` fields (e.g. ``{"k": 1}`` vs
``{"k": "auto"}``, ``{"red_flags": false}`` vs ``{"red_flags": true}``, a weaker vs a stronger simulated
model's ``error_rate``). A coalition's pipeline is the base settings updated with each slot's variant. The
benchmark is ``runs`` Hanoi runs per seed; a run scores 1 when it finishes with zero verifier errors, so
``v(S)`` is the fraction of runs solved.

Simulated wrong answers are well-formed, so red flags (which only look at length and format) would never
touch them. MAKER observed that over-long answers are far more often wrong; ``long_wrong_share`` models
that: this share of the simulated model's wrong answers come with an over-long completion, which red flags
discard and which are voted when red flags are off.
"""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mdap.errors import ConfigError
from mdap.models import SIMULATED, ChatModel, Sample
from mdap.types import Message

from ..hanoi import HanoiConfig, hanoi_oracle, run_hanoi, simulated_hanoi_model
from .game import Game, ModuleSlots

__all__ = ["MAX_RUNS", "LongWrongAnswers", "HanoiPipeline", "hanoi_game"]

MAX_RUNS = 1000
"""Runs per seed at most; run ``r`` of seed ``s`` uses the simulated model seed ``s * MAX_RUNS + r``."""

_MANAGED = frozenset({"seed", "run_dir", "trace", "resume", "progress", "checkpoint_every"})
_EXTRA = "long_wrong_share"


class LongWrongAnswers:
    """Wraps a simulated Hanoi model: a share of its wrong answers come over-long (MAKER's observation).

    A sample whose text is not the right answer gets, with probability ``share``, twice ``max_tokens``
    completion tokens, so the too-long red flag catches it.

    Raises:
        ConfigError: share outside [0, 1].
    """

    def __init__(self, inner: ChatModel, share: float, seed: int) -> None:
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"{_EXTRA} must be between 0 and 1, got {share!r}")
        self.inner = inner
        self.share = share
        self._rng = random.Random(seed)

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
    ) -> list[Sample]:
        """Draw from the wrapped model, then lengthen a share of the wrong answers."""
        out = await self.inner.sample(messages, n=n, temperature=temperature, max_tokens=max_tokens, adapter=adapter)
        right = hanoi_oracle(messages)
        for s in out:
            if s.text != right and s.finish_reason == "stop" and self._rng.random() < self.share:
                s.completion_tokens = 2 * (max_tokens or 750)
        return out


@dataclass(frozen=True, slots=True)
class HanoiPipeline:
    """The Hanoi pipeline of one coalition: HanoiConfig settings (minus the per-run ones) and the wrong-answer
    length model."""

    settings: dict[str, Any]
    long_wrong_share: float = 0.0

    def config(self, seed: int, run_dir: str) -> HanoiConfig:
        """The HanoiConfig of one run."""
        return HanoiConfig.build(**self.settings, seed=seed, run_dir=run_dir, checkpoint_every=1 << 40)

    def model(self, cfg: HanoiConfig) -> ChatModel | None:
        """The simulated model of a run (None: let run_hanoi build the model ``cfg.model`` names)."""
        if cfg.model != SIMULATED or not self.long_wrong_share:
            return None
        inner = simulated_hanoi_model(
            error_rate=cfg.error_rate,
            red_flag_rate=cfg.red_flag_rate,
            correlation=cfg.correlation,
            latency_s=cfg.latency,
            seed=cfg.seed,
        )
        return LongWrongAnswers(inner, self.long_wrong_share, cfg.seed)


def _merge(base: Mapping[str, Any], variants: Mapping[str, Any]) -> HanoiPipeline:
    settings = dict(base)
    for variant in variants.values():
        settings.update(variant)
    share = settings.pop(_EXTRA, 0.0)
    if isinstance(share, bool) or not isinstance(share, int | float):
        raise ConfigError(f"{_EXTRA} must be a number between 0 and 1, got {share!r}")
    return HanoiPipeline(settings, float(share))


async def _score(pipeline: HanoiPipeline, run: int, seed: int) -> float:
    with tempfile.TemporaryDirectory(prefix="mdap-attr-") as run_dir:
        cfg = pipeline.config(seed * MAX_RUNS + run, run_dir)
        report = await run_hanoi(cfg, model=pipeline.model(cfg))
    return 1.0 if report.ok else 0.0


def _check_variant(slot: str, kind: str, variant: Any) -> set[str]:
    if not isinstance(variant, Mapping):
        raise ConfigError(
            f"slot {slot!r}: the {kind} variant must be a dict of Hanoi settings (e.g. {{'k': 1}}), got {variant!r}"
        )
    managed = sorted(set(variant) & _MANAGED)
    if managed:
        raise ConfigError(f"slot {slot!r}: {managed} are set per run by the attribution; remove them")
    return set(variant)


def hanoi_game(
    slots: ModuleSlots | Mapping[str, Any],
    *,
    base: Mapping[str, Any] | None = None,
    runs: int = 20,
    seeds: Sequence[int] = (0,),
    name: str = "hanoi",
) -> Game[HanoiPipeline, int]:
    """The Hanoi attribution game (see the module docstring).

    Args:
        slots: the slots; each variant is a dict of HanoiConfig fields (plus ``long_wrong_share``).
        base: settings every coalition shares (HanoiConfig fields plus ``long_wrong_share``).
        runs: Hanoi runs per seed (the benchmark items).
        seeds: one replicate per seed.
        name: shown in reports.

    Raises:
        ConfigError: no runs, a variant that is not a dict, two slots setting the same field, per-run fields
            (seed, run_dir, ...) in the settings, or settings HanoiConfig rejects.
    """
    ms = slots if isinstance(slots, ModuleSlots) else ModuleSlots.from_dict(slots)
    shared = dict(base or {})
    if not isinstance(runs, int) or runs < 1 or runs > MAX_RUNS:
        raise ConfigError(f"the Hanoi benchmark needs between 1 and {MAX_RUNS} runs per seed, got {runs!r}")
    _check_variant("base", "shared", shared)
    owner: dict[str, str] = {}
    for slot in ms.slots:
        keys = _check_variant(slot.name, "default", slot.default) | _check_variant(slot.name, "test", slot.test)
        for key in sorted(keys):
            if key in owner:
                raise ConfigError(f"slots {owner[key]!r} and {slot.name!r} both set {key!r}; give each field one slot")
            owner[key] = slot.name
    everyone = ms.names
    for coalition in ([], everyone):  # both extremes use every variant once: validate them all up front
        pipeline = _merge(shared, ms.variants(coalition))
        pipeline.config(0, ".")
        LongWrongAnswers(simulated_hanoi_model(), pipeline.long_wrong_share, 0)
    return Game(
        slots=ms,
        factory=lambda variants: _merge(shared, variants),
        scorer=_score,
        benchmark=list(range(runs)),
        seeds=seeds,
        name=name,
        fingerprint=_fingerprint(name, shared, ms, runs),
    )


def _fingerprint(name: str, base: Mapping[str, Any], slots: ModuleSlots, runs: int) -> str:
    spec = {
        "game": "hanoi",
        "name": name,
        "base": base,
        "slots": [[s.name, s.default, s.test] for s in slots.slots],
        "runs": runs,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=repr).encode()).hexdigest()[:16]
