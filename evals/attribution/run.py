"""Run an attribution: score coalitions (cached, in parallel up to a limit), then Shapley/Banzhaf per seed.

Exact: every coalition is scored for every seed; Shapley values, Banzhaf values and interaction indices are
computed per seed and reported as mean and Student-t confidence interval over the seeds. Sampled: the
permutation sampler asks for coalitions as it needs them (``v(S)`` = mean over the seeds) and reports its
own intervals.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

from mdap.errors import ConfigError, MdapError

from ._cache import ScoreCache, UnitKey
from ._stats import check_confidence, mean_ci
from .game import Game
from .report import AttributionReport, CoalitionScore, Estimate, PairInteraction
from .shapley import banzhaf_values, interaction_indices, sampled_shapley_values, shapley_values

__all__ = ["Progress", "attribute", "attribute_async"]

Progress = Callable[[int, int], None]
"""Called after each scored unit with (units scored in this session, units to score)."""


def _label(coalition: frozenset[str]) -> str:
    return "{" + ", ".join(sorted(coalition)) + "}"


class _Runner:
    def __init__(self, game: Game[Any, Any], cache: ScoreCache, parallel: int, progress: Progress | None) -> None:
        self.game = game
        self.cache = cache
        self.limit = asyncio.Semaphore(parallel)
        self.progress = progress
        self.scored = 0
        self.total = 0

    def _where(self) -> str:
        if self.cache.path is None:
            return ""
        return f"; the scores computed so far are cached in {self.cache.path}: fix the problem and run again to resume"

    async def _score(self, key: UnitKey) -> tuple[float, list[float]]:
        coalition, seed = key
        game = self.game
        what = f"coalition {_label(coalition)}, seed {seed}"
        try:
            pipeline = game.factory(game.slots.variants(coalition))
        except ConfigError as err:
            raise ConfigError(f"building the pipeline for {what}: {err}{self._where()}") from err
        except Exception as err:
            raise MdapError(
                f"the pipeline factory failed for {what}: {type(err).__name__}: {err}{self._where()}"
            ) from err
        is_async = inspect.iscoroutinefunction(game.scorer)
        scores = []
        for n, item in enumerate(game.benchmark):
            if n:
                await asyncio.sleep(0)  # let an interrupt (or a failed unit) cancel this unit between items
            try:
                got: Any
                if is_async:
                    got = await game.scorer(pipeline, item, seed)  # type: ignore[misc]
                else:
                    got = await asyncio.to_thread(game.scorer, pipeline, item, seed)
                    if inspect.isawaitable(got):
                        got = await got
            except ConfigError as err:
                raise ConfigError(f"scoring {what} on item {n}: {err}{self._where()}") from err
            except Exception as err:
                raise MdapError(
                    f"the scorer raised on {what}, item {n}: {type(err).__name__}: {err}{self._where()}"
                ) from err
            score = _finite(got)
            if score is None:
                raise MdapError(f"the scorer returned {got!r} for {what}, item {n}; a score must be a finite number")
            scores.append(score)
        return math.fsum(scores) / len(scores), scores

    async def _unit(self, key: UnitKey) -> None:
        async with self.limit:
            score, items = await self._score(key)
        self.cache.add(key, score, items)
        self.scored += 1
        if self.progress is not None:
            self.progress(self.scored, self.total)

    async def ensure(self, keys: Sequence[UnitKey]) -> None:
        """Score every unit of ``keys`` not in the cache, at most ``parallel`` at a time; stop at the first error."""
        todo = self.cache.missing(keys)
        if not todo:
            return
        self.total += len(todo)
        tasks = [asyncio.create_task(self._unit(k)) for k in todo]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]


def _finite(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _coalitions(players: Sequence[str]) -> list[frozenset[str]]:
    n = len(players)
    return [frozenset(players[i] for i in range(n) if mask >> i & 1) for mask in range(1 << n)]


def _estimate(values: Sequence[float], confidence: float) -> Estimate:
    mean, low, high = mean_ci(values, confidence)
    return Estimate(mean=mean, low=low, high=high, per_seed=list(values))


def _shown(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


async def attribute_async(
    game: Game[Any, Any],
    *,
    cache: str | Path | None = None,
    parallel: int = 4,
    confidence: float = 0.95,
    method: Literal["exact", "sampled"] = "exact",
    target_se: float | None = None,
    max_evaluations: int | None = None,
    sampling_seed: int = 0,
    progress: Progress | None = None,
) -> AttributionReport:
    """Attribute the benchmark score of ``game`` to its slots (see the module docstring).

    Args:
        game: slots, pipeline factory, benchmark, scorer and seeds.
        cache: the score cache file (JSONL); scores found there are reused, new ones appended as they come.
            None keeps scores in memory only.
        parallel: how many (coalition, seed) units are scored at once (sync scorers run in threads).
        confidence: confidence level of every interval.
        method: ``"exact"`` (all 2^n coalitions) or ``"sampled"`` (permutation sampling).
        target_se: sampled: stop once every standard error is at most this.
        max_evaluations: sampled: the budget of distinct coalitions scored.
        sampling_seed: sampled: seed of the permutation order.
        progress: called after each unit scored.

    Raises:
        ConfigError: bad arguments, or a factory/scorer that rejects its input.
        MdapError: a factory or scorer that raises, or a score that is not a finite number.
        CheckpointError: a cache written for another game.
    """
    check_confidence(confidence)
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ConfigError(f"parallel must be an integer >= 1, got {parallel!r}")
    if method not in ("exact", "sampled"):
        raise ConfigError(f"method must be 'exact' or 'sampled', got {method!r}")
    t0 = time.perf_counter()
    store = ScoreCache(Path(cache) if cache is not None else None, game.identity())
    try:
        runner = _Runner(game, store, parallel, progress)
        if method == "exact":
            parts = await _exact(runner, confidence)
        else:
            parts = await _sampled(runner, confidence, target_se, max_evaluations, sampling_seed)
    finally:
        store.close()
    return _report(runner, method, confidence, parts, time.perf_counter() - t0)


class _Parts(NamedTuple):
    coalitions: list[frozenset[str]]
    shapley: dict[str, Estimate]
    banzhaf: dict[str, Estimate] | None
    interactions: list[PairInteraction]
    sampling: dict[str, Any] | None


async def _exact(runner: _Runner, confidence: float) -> _Parts:
    players, seeds, scores = runner.game.players, runner.game.seeds, runner.cache.scores
    coalitions = _coalitions(players)
    await runner.ensure([(c, s) for s in seeds for c in coalitions])
    tables = [{c: scores[(c, s)] for c in coalitions} for s in seeds]
    phis = [shapley_values(players, t.__getitem__) for t in tables]
    betas = [banzhaf_values(players, t.__getitem__) for t in tables]
    inters = [interaction_indices(players, t.__getitem__) for t in tables]
    return _Parts(
        coalitions=coalitions,
        shapley={p: _estimate([phi[p] for phi in phis], confidence) for p in players},
        banzhaf={p: _estimate([b[p] for b in betas], confidence) for p in players},
        interactions=[
            PairInteraction(pair=pair, index=_estimate([i[pair] for i in inters], confidence)) for pair in inters[0]
        ],
        sampling=None,
    )


async def _sampled(
    runner: _Runner, confidence: float, target_se: float | None, max_evaluations: int | None, sampling_seed: int
) -> _Parts:
    players, seeds, scores = runner.game.players, runner.game.seeds, runner.cache.scores
    loop = asyncio.get_running_loop()

    def value(coalition: frozenset[str]) -> float:  # runs in a worker thread; scoring stays on the loop
        keys = [(coalition, s) for s in seeds]
        asyncio.run_coroutine_threadsafe(runner.ensure(keys), loop).result()
        return math.fsum(scores[k] for k in keys) / len(keys)

    result = await asyncio.to_thread(
        sampled_shapley_values,
        players,
        value,
        target_se=target_se,
        max_evaluations=max_evaluations,
        confidence=confidence,
        seed=sampling_seed,
    )
    done = {c for c, _ in scores}
    return _Parts(
        coalitions=[c for c in _coalitions(players) if c in done and all((c, s) in scores for s in seeds)],
        shapley={p: Estimate(mean=e.value, low=e.low, high=e.high, se=e.se) for p, e in result.items()},
        banzhaf=None,
        interactions=[],
        sampling={"permutations": result.permutations, "evaluations": result.evaluations, "stopped": result.stopped},
    )


def _report(
    runner: _Runner, method: Literal["exact", "sampled"], confidence: float, parts: _Parts, wall: float
) -> AttributionReport:
    game, scores = runner.game, runner.cache.scores
    players, seeds = game.players, list(game.seeds)
    rows = [
        CoalitionScore(
            coalition=[p for p in players if p in c],
            scores=[scores[(c, s)] for s in seeds],
            items=[runner.cache.items.get((c, s), []) for s in seeds],
            value=_estimate([scores[(c, s)] for s in seeds], confidence),
        )
        for c in parts.coalitions
    ]
    empty = _estimate([scores[(frozenset(), s)] for s in seeds], confidence)
    full = _estimate([scores[(frozenset(players), s)] for s in seeds], confidence)
    return AttributionReport(
        name=game.name,
        method=method,
        players=players,
        variants={s.name: {"default": _shown(s.default), "test": _shown(s.test)} for s in game.slots.slots},
        seeds=seeds,
        benchmark_items=len(game.benchmark),
        confidence=confidence,
        shapley=parts.shapley,
        banzhaf=parts.banzhaf,
        interactions=parts.interactions,
        empty=empty,
        full=full,
        efficiency_gap=math.fsum(e.mean for e in parts.shapley.values()) - (full.mean - empty.mean),
        coalitions=rows,
        scored=runner.scored,
        cached=len(rows) * len(seeds) - runner.scored,
        wall_seconds=wall,
        sampling=parts.sampling,
    )


def attribute(game: Game[Any, Any], **options: Any) -> AttributionReport:
    """Synchronous :func:`attribute_async` (same arguments); not for use inside a running event loop."""
    return asyncio.run(attribute_async(game, **options))
