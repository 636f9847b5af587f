"""The attribution bar chart: Shapley (and Banzhaf) value per slot with confidence intervals, as a PNG.

matplotlib is an optional extra (``pip install 'mdap[plot]'``), imported only when a chart is drawn.
"""

from __future__ import annotations

import io
from pathlib import Path

from mdap._outputs import RERUN, write_atomic
from mdap.errors import ConfigError

from .report import AttributionReport, Estimate

__all__ = ["plot_attribution"]


def _errors(estimates: list[Estimate]) -> list[list[float]]:
    below = [e.mean - e.low if e.low is not None else 0.0 for e in estimates]
    above = [e.high - e.mean if e.high is not None else 0.0 for e in estimates]
    return [below, above]


def plot_attribution(report: AttributionReport, path: str | Path, *, rerun: str = RERUN) -> Path:
    """Draw the report's values per slot as bars with their confidence intervals and save a PNG (atomically).

    Raises:
        ConfigError: matplotlib is not installed (install the ``plot`` extra).
        OutputError: the PNG could not be written (the previous version stays).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "the bar chart needs matplotlib: pip install 'mdap[plot]' (or skip the chart with --no-plot)"
        ) from None
    players = report.players
    series = [("Shapley", [report.shapley[p] for p in players])]
    if report.banzhaf:
        series.append(("Banzhaf", [report.banzhaf[p] for p in players]))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(players) + 2.0), 4.2))
    for n, (label, estimates) in enumerate(series):
        xs = [i + (n - (len(series) - 1) / 2) * width for i in range(len(players))]
        ax.bar(xs, [e.mean for e in estimates], width, yerr=_errors(estimates), capsize=4, label=label)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(players)), players)
    ax.set_ylabel("contribution to the score")
    ci = f"{report.confidence:.0%} CI over {len(report.seeds)} seeds" if report.method == "exact" else "sampling CI"
    ax.set_title(
        f"{report.name}: v(default) {report.empty.mean:.2f} -> v(test) {report.full.mean:.2f} ({ci})", fontsize=10
    )
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    write_atomic(out, png.getvalue(), rerun=rerun)
    return out
