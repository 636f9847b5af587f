"""Evaluate the base model and an adapter side by side on held-out steps, through the real local vLLM server,
and train in rounds (train, evaluate on training states, oversample the states still wrong, train again)."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from mdap.errors import ConfigError
from mdap.models import Adapter, ChatModel
from mdap.models.lora_data import TrainingExample, read_examples, write_examples
from mdap.models.training import CARD_FILE, TrainConfig, TrainResult, answer_probabilities, read_card, train_adapter
from mdap.voters import Spread

from ..hanoi.task import HanoiStep
from .dataset import reweight
from .evaluate import HeldoutReport, evaluate_heldout, hanoi_parser

__all__ = ["Mining", "compare_models", "record_eval", "train_rounds"]


async def compare_models(
    model: ChatModel,
    examples: Sequence[TrainingExample],
    *,
    adapter: str | None,
    base: bool = True,
    plain: bool = True,
    decorrelate: bool = False,
    on_report: Callable[[HeldoutReport], None] | None = None,
    **options: Any,
) -> list[HeldoutReport]:
    """Held-out reports of the base model (``base``), the adapter (``plain``), and the adapter with decorrelated
    sampling (``decorrelate``), in that order.

    ``on_report`` sees each report as soon as it is measured (so a long comparison that is stopped keeps what it
    measured); ``options`` go to :func:`evaluate_heldout` (samples, temperature, steps, target, concurrency...).
    """
    spread = Spread(HanoiStep(3).transforms)
    runs: list[tuple[str, str | None, Spread | None]] = []
    if base:
        runs.append(("base", None, None))
    if adapter is not None and plain:
        runs.append((adapter, adapter, None))
    if decorrelate:
        runs.append((adapter or "base", adapter, spread))
    reports = []
    for name, a, s in runs:
        report = await evaluate_heldout(model, examples, hanoi_parser, name=name, adapter=a, spread=s, **options)
        reports.append(report)
        if on_report is not None:
            on_report(report)
    return reports


def record_eval(adapter: Adapter, reports: Sequence[HeldoutReport]) -> None:
    """Add the headline figures of ``reports`` to the adapter's model card (``p_stats``)."""
    card = read_card(adapter.path)
    if not card:
        return
    card["p_stats"] = [r.headline() | {"p_quantiles": r.p_quantiles, "steps": r.steps} for r in reports]
    (adapter.path / CARD_FILE).write_text(json.dumps(card, indent=2))


class Mining(BaseModel):
    """How a round's data was weighted: p measured per training state, by sampling or exactly."""

    method: Literal["sample", "exact"]
    states: int
    mean_p: float
    fraction_above_half: float
    p_by_group: dict[str, float]

    @classmethod
    def of(cls, method: Literal["sample", "exact"], p_by_group: dict[str, float]) -> Mining:
        """Summarise per-state p (at least one state)."""
        ps = list(p_by_group.values())
        return cls(
            method=method,
            states=len(ps),
            mean_p=sum(ps) / len(ps),
            fraction_above_half=sum(p > 0.5 for p in ps) / len(ps),
            p_by_group=p_by_group,
        )


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
    mine: Literal["sample", "exact"] = "sample",
) -> list[tuple[TrainResult, Mining | None]]:
    """Train ``rounds`` rounds; between rounds, measure p on ``mine_states`` training states (original prompts)
    and reweight every example of a state by ``1 + factor * (1 - p)`` before the next round.

    Each round continues from the previous round's adapter with ``cfg.steps`` more steps; rounds are written to
    ``OUT/round-N`` and the last one is copied to ``OUT``.

    Args:
        model_factory: ``(adapter_name, adapter_folder) -> ChatModel`` serving the adapter (an async context
            manager, e.g. a LocalModel); called once per sampled mining pass.
        mine_first: mine ``cfg.init_adapter`` before the first round too (continue an adapter already trained
            on the plain data with hard-example rounds only).
        mine: ``"sample"`` draws ``mine_samples`` per state through ``model_factory``'s server; ``"exact"``
            computes each state's answer probability at ``temperature`` in one forward pass per batch
            (:func:`~mdap.models.training.answer_probabilities`), much cheaper on a CPU.

    Returns:
        Per round: its training result and the mining that weighted its data (None: the data as given).

    Raises:
        ConfigError: rounds < 1, or ``mine_first`` without ``cfg.init_adapter``.
    """
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    if mine_first and cfg.init_adapter is None:
        raise ConfigError("mining before the first round needs an adapter to mine: give init_adapter")
    examples = read_examples(cfg.data)
    originals = [ex for ex in examples if ex.meta.get("rotation", 0) == 0]
    out: list[tuple[TrainResult, Mining | None]] = []
    previous: Path | None = cfg.init_adapter

    async def measure(folder: Path, r: int) -> Mining:
        probe = random.Random(cfg.seed + r).sample(originals, min(mine_states, len(originals)))
        if mine == "exact":
            ps = answer_probabilities(
                cfg.base, probe, adapter=folder, temperature=temperature, batch_size=cfg.batch_size,
                max_length=cfg.max_length, threads=cfg.threads, progress=cfg.progress,
            )  # fmt: skip
            return Mining.of("exact", {ex.group or ex.id: p for ex, p in zip(probe, ps, strict=True)})
        async with model_factory(cfg.role, folder) as model:
            report = await evaluate_heldout(
                model, probe, hanoi_parser, name=f"{cfg.role}-round-{r}", adapter=cfg.role,
                samples=mine_samples, temperature=temperature, progress=cfg.progress,
            )  # fmt: skip
        return Mining.of("sample", {s.group: s.p or 0.0 for s in report.per_state})

    mining: Mining | None = None
    for r in range(1, rounds + 1):
        if previous is not None and (r > 1 or mine_first):
            mining = await measure(previous, r - 1)
            examples = reweight(examples, mining.p_by_group, factor)
        folder = cfg.out / f"round-{r}"
        data = cfg.out / f"round-{r}.data.jsonl"
        write_examples(data, examples)
        result = train_adapter(cfg.model_copy(update={"out": folder, "data": data, "init_adapter": previous}))
        out.append((result, mining))
        previous = folder
    for item in folder.iterdir():
        if item.is_file():
            shutil.copy(item, cfg.out / item.name)
    return out
