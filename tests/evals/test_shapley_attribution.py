"""The attribution runner: slots, the on-disk cache and resume, bounded parallel scoring, seeds, outputs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from mdap.errors import CheckpointError, ConfigError, MdapError
from mdap.evals.attribution import (
    AttributionReport,
    Game,
    ModuleSlots,
    Slot,
    attribute,
    attribute_async,
    plot_attribution,
    write_outputs,
)
from mdap.evals.attribution._cache import ScoreCache
from mdap.evals.attribution.shapley import shapley_values

# A game whose pipeline is a dict of numbers: the score is their sum (+ a pair bonus) plus a per-seed offset.
SLOTS = ModuleSlots(
    [
        Slot("planner", default=0.0, test=0.2),
        Slot("voter", default=0.0, test=0.5),
        Slot("model", default=0.1, test=0.4),
    ]
)


def _factory(variants: dict[str, Any]) -> dict[str, float]:
    return dict(variants)


def _score(pipeline: dict[str, float], item: int, seed: int) -> float:
    bonus = 0.3 if pipeline["voter"] and pipeline["model"] > 0.2 else 0.0
    return sum(pipeline.values()) + bonus + 0.01 * item + 0.05 * seed


def _game(scorer: Any = _score, **kw: Any) -> Game[Any, Any]:
    options: dict[str, Any] = {"benchmark": [0, 1, 2], "seeds": [0, 1, 2], "name": "toy"}
    options.update(kw)
    return Game(slots=SLOTS, factory=_factory, scorer=scorer, **options)


def _v(coalition: frozenset[str], seed: int) -> float:
    pipeline = _factory(SLOTS.variants(coalition))
    return sum(_score(pipeline, i, seed) for i in range(3)) / 3


def test_exact_attribution_matches_the_core_on_every_seed() -> None:
    report = attribute(_game())
    players = ["planner", "voter", "model"]
    assert report.players == players
    expected = [shapley_values(players, lambda s, seed=seed: _v(s, seed)) for seed in (0, 1, 2)]
    for p in players:
        assert report.shapley[p].per_seed == pytest.approx([e[p] for e in expected])
    # the per-seed offset cancels out of every marginal: the seeds agree, so the interval is a point
    assert report.shapley["voter"].mean == pytest.approx(0.5 + 0.15)
    assert report.shapley["voter"].low == pytest.approx(report.shapley["voter"].high)
    assert report.shapley["planner"].mean == pytest.approx(0.2)
    assert report.efficiency_gap == pytest.approx(0.0, abs=1e-12)
    assert report.banzhaf is not None
    assert report.banzhaf["model"].mean == pytest.approx(0.3 + 0.15)
    pair = {tuple(i.pair): i.index.mean for i in report.interactions}
    assert pair[("voter", "model")] == pytest.approx(0.3)
    assert pair[("planner", "voter")] == pytest.approx(0.0, abs=1e-12)
    assert len(report.coalitions) == 8
    assert report.empty.per_seed == pytest.approx([_v(frozenset(), s) for s in (0, 1, 2)])
    assert report.full.mean == pytest.approx(sum(_v(frozenset(players), s) for s in (0, 1, 2)) / 3)
    assert report.scored == 24
    assert report.cached == 0


def test_seed_noise_gives_a_confidence_interval_that_covers_the_truth() -> None:
    def noisy(pipeline: dict[str, float], item: int, seed: int) -> float:
        return _score(pipeline, item, seed) + (0.1 if (seed + item) % 2 else -0.1) * pipeline["voter"] * 4

    report = attribute(_game(noisy, seeds=[0, 1, 2, 3, 4]))
    est = report.shapley["voter"]
    assert est.low is not None and est.high is not None
    assert est.low < est.mean < est.high
    assert len(set(est.per_seed)) > 1
    assert est.low <= 0.65 <= est.high


def test_sync_and_async_scorers_give_the_same_report() -> None:
    async def async_score(pipeline: dict[str, float], item: int, seed: int) -> float:
        await asyncio.sleep(0)
        return _score(pipeline, item, seed)

    a, b = attribute(_game()), attribute(_game(async_score))
    assert {p: e.mean for p, e in a.shapley.items()} == {p: e.mean for p, e in b.shapley.items()}


def test_coalitions_run_in_parallel_up_to_the_limit() -> None:
    running = peak = 0

    async def slow(pipeline: dict[str, float], item: int, seed: int) -> float:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return _score(pipeline, item, seed)

    attribute(_game(slow, benchmark=[0]), parallel=3)
    assert peak == 3
    peak = 0
    attribute(_game(slow, benchmark=[0]), parallel=1)
    assert peak == 1


def test_sync_scorers_run_in_threads_up_to_the_limit() -> None:
    lock = threading.Lock()
    running = peak = 0
    gate = threading.Event()

    def blocking(pipeline: dict[str, float], item: int, seed: int) -> float:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            if running == 2:
                gate.set()
        gate.wait(timeout=1.0)  # the first unit waits for a second one to start alongside it
        with lock:
            running -= 1
        return _score(pipeline, item, seed)

    attribute(_game(blocking, benchmark=[0], seeds=[0]), parallel=2)
    assert peak == 2


def test_interrupted_attribution_resumes_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "scores.jsonl"
    calls = 0

    def flaky(pipeline: dict[str, float], item: int, seed: int) -> float:
        nonlocal calls
        calls += 1
        if calls == 10:
            raise RuntimeError("the benchmark server went away")
        return _score(pipeline, item, seed)

    with pytest.raises(MdapError, match="the benchmark server went away") as err:
        attribute(_game(flaky, benchmark=[0]), cache=cache, parallel=1)
    assert "cached in" in str(err.value)
    assert "run again to resume" in str(err.value)
    done = len(cache.read_text().splitlines()) - 1  # minus the header
    assert done == 9

    calls = 0
    counted = 0

    def counting(pipeline: dict[str, float], item: int, seed: int) -> float:
        nonlocal counted
        counted += 1
        return _score(pipeline, item, seed)

    report = attribute(_game(counting, benchmark=[0]), cache=cache, parallel=2)
    assert counted == 24 - 9
    assert report.scored == 15
    assert report.cached == 9
    again = attribute(_game(counting, benchmark=[0]), cache=cache)
    assert counted == 15  # everything came from the cache
    assert again.scored == 0
    assert again.shapley == report.shapley


def test_a_line_cut_short_by_a_crash_is_dropped(tmp_path: Path) -> None:
    cache = tmp_path / "scores.jsonl"
    attribute(_game(benchmark=[0], seeds=[0]), cache=cache)
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:15])  # the last entry half written
    report = attribute(_game(benchmark=[0], seeds=[0]), cache=cache)
    assert report.scored == 1
    assert report.cached == 7
    assert all(json.loads(line) for line in cache.read_text().splitlines())


def test_a_cache_of_another_game_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "scores.jsonl"
    attribute(_game(benchmark=[0], seeds=[0]), cache=cache)
    with pytest.raises(CheckpointError, match="written for another game"):
        attribute(_game(benchmark=[0, 1], seeds=[0]), cache=cache)
    (tmp_path / "junk.jsonl").write_text("hello\n")
    with pytest.raises(CheckpointError, match="not an mdap score cache"):
        attribute(_game(), cache=tmp_path / "junk.jsonl")


def test_more_seeds_reuse_the_cached_ones(tmp_path: Path) -> None:
    cache = tmp_path / "scores.jsonl"
    attribute(_game(seeds=[0, 1]), cache=cache)
    report = attribute(_game(seeds=[0, 1, 2]), cache=cache)
    assert report.cached == 16
    assert report.scored == 8


def test_sampled_method_on_a_game() -> None:
    report = attribute(_game(), method="sampled", target_se=0.01, sampling_seed=2)
    assert report.method == "sampled"
    assert report.sampling is not None
    assert report.sampling["stopped"] == "target_se"
    exact = attribute(_game())
    for p in report.players:
        est = report.shapley[p]
        assert est.low is not None and est.high is not None
        assert est.low - 1e-9 <= exact.shapley[p].mean <= est.high + 1e-9
    assert report.banzhaf is None
    assert report.coalitions  # the coalitions it scored, with their raw scores


def test_sampled_method_needs_a_stopping_rule() -> None:
    with pytest.raises(ConfigError, match="target_se, max_evaluations"):
        attribute(_game(), method="sampled")


def test_slot_without_a_variant_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="slot 'voter' has no test variant"):
        Slot("voter", default={"k": 1})
    with pytest.raises(ConfigError, match="no default and no test variant"):
        ModuleSlots.from_dict({"voter": {}})
    with pytest.raises(ConfigError, match="no default variant"):
        ModuleSlots.from_dict({"voter": {"test": 1}})
    with pytest.raises(ConfigError, match="unknown keys"):
        ModuleSlots.from_dict({"voter": {"default": 1, "test": 2, "other": 3}})
    with pytest.raises(ConfigError, match="a \\(default, test\\) pair"):
        ModuleSlots.from_dict({"voter": 3})
    with pytest.raises(ConfigError, match="at least one slot"):
        ModuleSlots([])
    with pytest.raises(ConfigError, match="distinct"):
        ModuleSlots([Slot("a", 1, 2), Slot("a", 3, 4)])
    assert ModuleSlots.from_dict({"planner": (None, "llm")}).variants({"planner"}) == {"planner": "llm"}
    with pytest.raises(ConfigError, match="unknown slots"):
        SLOTS.variants({"critic"})


def test_empty_benchmark_and_bad_seeds_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="benchmark of 'toy' is empty"):
        _game(benchmark=[])
    with pytest.raises(ConfigError, match="at least one seed"):
        _game(seeds=[])
    with pytest.raises(ConfigError, match="distinct"):
        _game(seeds=[1, 1])
    with pytest.raises(ConfigError, match="parallel"):
        attribute(_game(), parallel=0)


def test_scorer_that_raises_or_returns_junk_is_a_clear_error() -> None:
    def broken(pipeline: dict[str, float], item: int, seed: int) -> float:
        raise KeyError("missing field")

    with pytest.raises(MdapError, match=r"the scorer raised on coalition .*, seed 0, item 0: KeyError"):
        attribute(_game(broken), parallel=1)

    def junk(pipeline: dict[str, float], item: int, seed: int) -> Any:
        return None

    with pytest.raises(MdapError, match=r"scorer returned None .* finite number"):
        attribute(_game(junk))

    def factory(variants: dict[str, Any]) -> Any:
        raise ConfigError("voter k must be >= 1")

    with pytest.raises(ConfigError, match=r"building the pipeline for coalition .*voter k must be >= 1"):
        attribute(Game(slots=SLOTS, factory=factory, scorer=_score, benchmark=[0]))


def test_outputs_table_json_csv_png(tmp_path: Path) -> None:
    report = attribute(_game())
    table = report.table()
    for text in ("Shapley", "Banzhaf", "planner", "voter x model", "sum of Shapley"):
        assert text in table
    paths = write_outputs(report, tmp_path)
    loaded = AttributionReport.model_validate_json(paths["report"].read_text())
    assert loaded == report
    rows = paths["scores"].read_text().splitlines()
    assert rows[0] == "coalition,planner,voter,model,seed,score"
    assert len(rows) == 1 + 8 * 3
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_attribution(report, tmp_path / "again.png").stat().st_size > 1000


async def test_attribute_async_inside_a_running_loop() -> None:
    report = await attribute_async(_game(benchmark=[0], seeds=[0]))
    assert report.shapley["planner"].mean == pytest.approx(0.2)
    assert report.shapley["planner"].low is None  # one seed: no interval


def test_importing_attribution_loads_no_matplotlib() -> None:
    code = "import sys, mdap.evals.attribution, mdap.evals.shapley; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_two_attributions_never_share_a_cache(tmp_path: Path) -> None:
    cache = tmp_path / "scores.jsonl"
    holder = ScoreCache(cache, _game().identity())
    try:
        with pytest.raises(CheckpointError, match="another attribution is using"):
            attribute(_game(), cache=cache)
    finally:
        holder.close()
    assert attribute(_game(), cache=cache).scored == 24


async def test_cancelling_stops_soon_even_when_the_scorer_never_suspends(tmp_path: Path) -> None:
    # Ctrl-C cancels the main task; a scorer that never awaits anything must still stop within a unit or two.
    calls = 0
    main: asyncio.Task[Any] | None = None

    async def busy(pipeline: dict[str, float], item: int, seed: int) -> float:
        nonlocal calls
        calls += 1
        if calls == 5 and main is not None:
            main.cancel()
        return _score(pipeline, item, seed)

    main = asyncio.create_task(attribute_async(_game(busy), cache=tmp_path / "c.jsonl", parallel=2))
    with pytest.raises(asyncio.CancelledError):
        await main
    assert 5 <= calls <= 5 + 2 * 3  # at most the units in flight finish their current item
    cached = len((tmp_path / "c.jsonl").read_text().splitlines()) - 1
    assert 1 <= cached < 24
    report = await attribute_async(_game(), cache=tmp_path / "c.jsonl")
    assert report.cached == cached
    assert report.scored == 24 - cached
