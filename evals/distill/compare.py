"""Evaluate the base model and an adapter side by side on held-out steps, through the real local vLLM server,
and train in rounds (train, evaluate on training states, oversample the states still wrong, train again)."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mdap.errors import ConfigError
from mdap.models import Adapter, ChatModel
from mdap.models.lora_data import TrainingExample, read_examples, write_examples
from mdap.models.training import CARD_FILE, TrainConfig, TrainResult, read_card, train_adapter
from mdap.voters import Spread

from ..hanoi.task import HanoiStep
from .dataset import reweight
from .evaluate import HeldoutReport, evaluate_heldout, hanoi_parser

__all__ = ["compare_models", "record_eval", "train_rounds"]


async def compare_models(
    model: ChatModel,
    examples: Sequence[TrainingExample],
    *,
    adapter: str | None,
    base: bool = True,
    decorrelate: bool = False,
    **options: Any,
) -> list[HeldoutReport]:
    """Held-out reports of the base model (``base``), the adapter, and the adapter with decorrelated sampling.

    ``options`` go to :func:`evaluate_heldout` (samples, temperature, steps, target, concurrency...).
    """
    spread = Spread(HanoiStep(3).transforms)
    runs: list[tuple[str, str | None, Spread | None]] = []
    if base:
        runs.append(("base", None, None))
    if adapter is not None:
        runs.append((adapter, adapter, None))
    if decorrelate:
        runs.append((adapter or "base", adapter, spread))
    return [
        await evaluate_heldout(model, examples, hanoi_parser, name=name, adapter=a, spread=s, **options)
        for name, a, s in runs
    ]


def record_eval(adapter: Adapter, reports: Sequence[HeldoutReport]) -> None:
    """Add the headline figures of ``reports`` to the adapter's model card (``p_stats``)."""
    card = read_card(adapter.path)
    if not card:
        return
    card["p_stats"] = [r.headline() | {"p_quantiles": r.p_quantiles, "steps": r.steps} for r in reports]
    (adapter.path / CARD_FILE).write_text(json.dumps(card, indent=2))


async def train_rounds(
    cfg: TrainConfig,
    rounds: int,
    model_factory: Any,
    *,
    mine_states: int = 60,
    mine_samples: int = 10,
    factor: float = 4.0,
    temperature: float = 0.7,
    mine_first: bool = False,
) -> list[tuple[TrainResult, HeldoutReport | None]]:
    """Train ``rounds`` rounds; between rounds, measure p on ``mine_states`` training states (original prompts)
    and reweight every example of a state by ``1 + factor * (1 - p)`` before the next round.

    Each round continues from the previous round's adapter with ``cfg.steps`` more steps; rounds are written to
    ``OUT/round-N`` and the last one is copied to ``OUT``.

    Args:
        model_factory: ``(adapter_name, adapter_folder) -> ChatModel`` serving the adapter (an async context
            manager, e.g. a LocalModel); called once per mining pass.
        mine_first: mine ``cfg.init_adapter`` before the first round too (continue an adapter already trained
            on the plain data with hard-example rounds only).

    Returns:
        Per round: its training result and the mining report that weighted its data (None: unweighted data).

    Raises:
        ConfigError: rounds < 1, or ``mine_first`` without ``cfg.init_adapter``.
    """
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    if mine_first and cfg.init_adapter is None:
        raise ConfigError("mining before the first round needs an adapter to mine: give init_adapter")
    examples = read_examples(cfg.data)
    originals = [ex for ex in examples if ex.meta.get("rotation", 0) == 0]
    out: list[tuple[TrainResult, HeldoutReport | None]] = []
    previous: Path | None = cfg.init_adapter

    async def mine(folder: Path, r: int) -> HeldoutReport:
        probe = random.Random(cfg.seed + r).sample(originals, min(mine_states, len(originals)))
        async with model_factory(cfg.role, folder) as model:
            return await evaluate_heldout(
                model, probe, hanoi_parser, name=f"{cfg.role}-round-{r}", adapter=cfg.role,
                samples=mine_samples, temperature=temperature, progress=cfg.progress,
            )  # fmt: skip

    report: HeldoutReport | None = None
    for r in range(1, rounds + 1):
        if previous is not None and (r > 1 or mine_first):
            report = await mine(previous, r - 1)
            examples = reweight(examples, {s.group: s.p or 0.0 for s in report.per_state}, factor)
        folder = cfg.out / f"round-{r}"
        data = cfg.out / f"round-{r}.data.jsonl"
        write_examples(data, examples)
        result = train_adapter(cfg.model_copy(update={"out": folder, "data": data, "init_adapter": previous}))
        out.append((result, report))
        previous = folder
    for item in folder.iterdir():
        if item.is_file():
            shutil.copy(item, cfg.out / item.name)
    return out
