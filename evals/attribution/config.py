"""Attribution config files (JSON or TOML) and the one call that runs one and writes every output.

A config names a pipeline (``"hanoi"``), its slots with their default and test variants, the settings they
share, the benchmark and the seeds::

    {
      "name": "hanoi-3-slots",
      "pipeline": "hanoi",
      "base": {"disks": 7, "error_rate": 0.02},
      "slots": {"voter": {"default": {"k": 1}, "test": {"k": "auto"}}},
      "benchmark": {"runs": 20},
      "seeds": [0, 1, 2]
    }

Outputs (in ``output``, default ``.mdap/attribution/<name>``): ``scores.jsonl`` (the score cache: a rerun
resumes from it), ``report.json``, ``scores.csv`` (raw per-coalition scores) and ``attribution.png``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from mdap._outputs import check_output_dir
from mdap.errors import ConfigError
from mdap.jsontext import loads_json

from ._cache import CACHE_FILE, RERUN_ATTRIBUTION
from .game import Game, ModuleSlots
from .hanoi import hanoi_game
from .plot import plot_attribution
from .report import AttributionReport
from .run import Progress, attribute

__all__ = ["PIPELINES", "AttributionConfig", "load_config", "run_config", "write_outputs"]

GameBuilder = Callable[[str, ModuleSlots, dict[str, Any], dict[str, Any], list[int]], Game[Any, Any]]


def _hanoi(
    name: str, slots: ModuleSlots, base: dict[str, Any], bench: dict[str, Any], seeds: list[int]
) -> Game[Any, Any]:
    extra = sorted(set(bench) - {"runs"})
    if extra:
        raise ConfigError(f"the hanoi benchmark takes only 'runs' (runs per seed); unknown keys {extra}")
    if "runs" not in bench:
        raise ConfigError("the hanoi benchmark needs 'runs': how many runs each coalition is scored on per seed")
    runs = bench["runs"]
    if isinstance(runs, int) and runs == 0:
        raise ConfigError("the hanoi benchmark is empty (runs = 0); give it at least one run")
    return hanoi_game(slots, base=base, runs=runs, seeds=seeds, name=name)


PIPELINES: dict[str, GameBuilder] = {"hanoi": _hanoi}
"""Pipelines a config file can name, each with the function that builds its game."""


class AttributionConfig(BaseModel):
    """An attribution config file."""

    model_config = {"extra": "forbid"}

    name: str = Field("attribution", min_length=1, description="shown in reports; names the default output dir")
    pipeline: str = Field(description=f"which pipeline: one of {sorted(PIPELINES)}")
    slots: dict[str, Any] = Field(description="slot -> {'default': variant, 'test': variant}")
    base: dict[str, Any] = Field(default_factory=dict, description="settings every coalition shares")
    benchmark: dict[str, Any] = Field(description="the pipeline's benchmark, e.g. {'runs': 20} for hanoi")
    seeds: list[int] = Field(default_factory=lambda: [0], description="one replicate per seed")
    method: Literal["exact", "sampled"] = "exact"
    target_se: float | None = Field(None, gt=0, description="sampled: stop at this standard error")
    max_evaluations: int | None = Field(None, ge=1, description="sampled: budget of coalitions scored")
    parallel: int = Field(4, ge=1, description="(coalition, seed) units scored at once")
    confidence: float = Field(0.95, gt=0, lt=1, description="confidence level of the intervals")
    output: Path | None = Field(None, description="output directory (relative to the working directory)")

    def game(self) -> Game[Any, Any]:
        """Build the game this config describes.

        Raises:
            ConfigError: an unknown pipeline, a bad slot or bad pipeline settings.
        """
        builder = PIPELINES.get(self.pipeline)
        if builder is None:
            raise ConfigError(f"unknown pipeline {self.pipeline!r}; known: {', '.join(sorted(PIPELINES))}")
        return builder(self.name, ModuleSlots.from_dict(self.slots), self.base, self.benchmark, self.seeds)

    @property
    def output_dir(self) -> Path:
        """Where the outputs go."""
        return self.output or Path(".mdap") / "attribution" / self.name


def load_config(path: str | Path) -> AttributionConfig:
    """Read a JSON (``.json``) or TOML (``.toml``) attribution config.

    Raises:
        ConfigError: a missing or unreadable file, an unknown extension, bad syntax or bad fields.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"attribution config {p} does not exist")
    try:
        text = p.read_text()
        if p.suffix == ".json":
            data: Any = loads_json(text)
        elif p.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(f"attribution config {p}: use a .json or .toml file, not {p.suffix or 'no extension'!r}")
    except (ValueError, OSError, RecursionError) as err:  # RecursionError: TOML nested too deeply
        raise ConfigError(f"cannot read attribution config {p}: {err}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"attribution config {p} must hold an object/table at the top level")
    try:
        return AttributionConfig.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in err.errors(include_url=False)
        )
        raise ConfigError(f"invalid attribution config {p}: {problems}") from None


def write_outputs(report: AttributionReport, out_dir: Path, *, plot: bool = True) -> dict[str, Path]:
    """Write ``report.json``, ``scores.csv`` and (with ``plot``) ``attribution.png`` into ``out_dir``.

    Raises:
        ConfigError: ``plot`` without matplotlib installed.
        OutputError: a file could not be written (a full disk); the previous version of each stays.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"report": out_dir / "report.json", "scores": out_dir / "scores.csv"}
    report.write_json(paths["report"], rerun=RERUN_ATTRIBUTION)
    report.write_scores_csv(paths["scores"], rerun=RERUN_ATTRIBUTION)
    if plot:
        paths["plot"] = plot_attribution(report, out_dir / "attribution.png", rerun=RERUN_ATTRIBUTION)
    return paths


def run_config(
    path: str | Path,
    *,
    output: Path | None = None,
    parallel: int | None = None,
    fresh: bool = False,
    plot: bool = True,
    progress: Progress | None = None,
) -> tuple[AttributionReport, dict[str, Path]]:
    """Run the attribution a config file describes and write its outputs.

    Args:
        path: the config file.
        output: output directory instead of the config's.
        parallel: units scored at once instead of the config's.
        fresh: delete the score cache first (score every coalition again).
        plot: draw the bar chart (needs matplotlib).
        progress: called after each unit scored.

    Returns:
        The report and the paths written (``cache``, ``report``, ``scores``, ``plot``).
    """
    cfg = load_config(path)
    game = cfg.game()
    out_dir = output or cfg.output_dir
    check_output_dir(out_dir, "--out" if output is not None else "the config's output directory")
    if plot:  # fail before the long part if the chart cannot be drawn
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ConfigError("the bar chart needs matplotlib: pip install 'mdap[plot]' (or use --no-plot)") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = out_dir / CACHE_FILE
    if fresh:
        cache.unlink(missing_ok=True)
    report = attribute(
        game,
        cache=cache,
        parallel=parallel or cfg.parallel,
        confidence=cfg.confidence,
        method=cfg.method,
        target_se=cfg.target_se,
        max_evaluations=cfg.max_evaluations,
        progress=progress,
    )
    paths = {"cache": cache, **write_outputs(report, out_dir, plot=plot)}
    return report, paths
