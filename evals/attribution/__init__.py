"""Shapley attribution over pipelines: which module slot earned the benchmark score, and which holds it back.

Build a :class:`Game` (slots with default and test variants, a pipeline factory, a benchmark, a scorer), then
:func:`attribute` it; or write a config file and run ``mdap attribute CONFIG``. The plain functional core is
:mod:`mdap.evals.attribution.shapley`.
"""

from __future__ import annotations

from .config import PIPELINES, AttributionConfig, load_config, run_config, write_outputs
from .game import MISSING, Factory, Game, ModuleSlots, Scorer, Slot
from .hanoi import HanoiPipeline, LongWrongAnswers, hanoi_game
from .plot import plot_attribution
from .report import AttributionReport, CoalitionScore, Estimate, PairInteraction
from .run import Progress, attribute, attribute_async

__all__ = [
    "MISSING",
    "PIPELINES",
    "AttributionConfig",
    "AttributionReport",
    "CoalitionScore",
    "Estimate",
    "Factory",
    "Game",
    "HanoiPipeline",
    "LongWrongAnswers",
    "ModuleSlots",
    "PairInteraction",
    "Progress",
    "Scorer",
    "Slot",
    "attribute",
    "attribute_async",
    "hanoi_game",
    "load_config",
    "plot_attribution",
    "run_config",
    "write_outputs",
]
