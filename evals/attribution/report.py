"""AttributionReport: what an attribution found, as a pydantic model; a terminal table, JSON and CSV writers."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from mdap._outputs import RERUN, write_atomic

__all__ = ["AttributionReport", "CoalitionScore", "Estimate", "PairInteraction"]


class Estimate(BaseModel):
    """A number with its confidence interval.

    ``low``/``high`` are None when there is nothing to measure a spread on (a single seed).
    """

    mean: float
    low: float | None = None
    high: float | None = None
    se: float | None = Field(default=None, description="standard error (sampled estimates)")
    per_seed: list[float] = Field(default_factory=list, description="the value for each seed (exact method)")

    def show(self, digits: int = 3) -> str:
        """``0.412 [0.371, 0.453]`` (or just the mean without an interval)."""
        if self.low is None or self.high is None:
            return f"{self.mean:+.{digits}f}"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


class CoalitionScore(BaseModel):
    """The raw score of one coalition: the slots using their test variant, per seed and on average."""

    coalition: list[str]
    scores: list[float] = Field(description="one score per seed, in the order of the report's seeds")
    items: list[list[float]] = Field(default_factory=list, description="per seed, the score of each item")
    value: Estimate


class PairInteraction(BaseModel):
    """The Shapley interaction index of a pair: > 0 complements, < 0 substitutes."""

    pair: tuple[str, str]
    index: Estimate


class AttributionReport(BaseModel):
    """The outcome of an attribution: Shapley (and Banzhaf) values per slot, interactions, raw scores."""

    name: str
    method: Literal["exact", "sampled"]
    players: list[str] = Field(description="the slots, in order")
    variants: dict[str, dict[str, Any]] = Field(description="slot -> {'default': ..., 'test': ...} as shown")
    seeds: list[int]
    benchmark_items: int
    confidence: float
    shapley: dict[str, Estimate]
    banzhaf: dict[str, Estimate] | None = Field(default=None, description="exact method only")
    interactions: list[PairInteraction] = Field(default_factory=list, description="exact method only")
    empty: Estimate = Field(description="v(empty): every slot on its default variant")
    full: Estimate = Field(description="v(all): every slot on its test variant")
    efficiency_gap: float = Field(description="sum of Shapley values - (v(all) - v(empty)); ~0 when exact")
    coalitions: list[CoalitionScore]
    scored: int = Field(description="(coalition, seed) units scored in this session")
    cached: int = Field(description="units reused from the score cache")
    wall_seconds: float
    sampling: dict[str, Any] | None = Field(default=None, description="permutations, evaluations, stop reason")

    def table(self) -> str:
        """The report as a terminal table."""
        pct = f"{self.confidence:.0%} CI"
        rows = [("slot", f"Shapley [{pct}]", f"Banzhaf [{pct}]" if self.banzhaf else "", "default -> test")]
        for p in self.players:
            v = self.variants[p]
            rows.append(
                (
                    p,
                    self.shapley[p].show(),
                    self.banzhaf[p].show() if self.banzhaf else "",
                    f"{_short(v['default'])} -> {_short(v['test'])}",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [f"attribution {self.name!r}: {self.method}, {len(self.players)} slots, "]
        lines[0] += f"{len(self.seeds)} seed(s) x {self.benchmark_items} item(s)"
        for n, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths if w))
        total = sum(e.mean for e in self.shapley.values())
        lines.append(
            f"sum of Shapley {total:+.3f} = v(all) {self.full.mean:.3f} - v(empty) {self.empty.mean:.3f}"
            f" (gap {self.efficiency_gap:+.1e})"
        )
        if self.interactions:
            lines.append("interactions (> 0 complements, < 0 substitutes):")
            lines.extend(f"  {i.pair[0]} x {i.pair[1]}: {i.index.show()}" for i in self.interactions)
        if self.sampling:
            lines.append(f"sampling: {json.dumps(self.sampling)}")
        lines.append(f"{self.scored} unit(s) scored, {self.cached} from cache, {self.wall_seconds:.1f} s")
        return "\n".join(lines)

    def write_json(self, path: str | Path, *, rerun: str = RERUN) -> None:
        """Write the whole report as indented JSON, atomically.

        Raises:
            OutputError: it could not be written (the previous version stays).
        """
        write_atomic(path, self.model_dump_json(indent=2) + "\n", rerun=rerun)

    def write_scores_csv(self, path: str | Path, *, rerun: str = RERUN) -> None:
        """Write the raw per-coalition scores: one row per coalition and seed, atomically.

        Raises:
            OutputError: it could not be written (the previous version stays).
        """
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(["coalition", *self.players, "seed", "score"])
        for c in self.coalitions:
            flags = [int(p in c.coalition) for p in self.players]
            for seed, score in zip(self.seeds, c.scores, strict=False):
                w.writerow(["+".join(c.coalition) or "(none)", *flags, seed, repr(score)])
        write_atomic(path, buf.getvalue(), rerun=rerun)


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."
