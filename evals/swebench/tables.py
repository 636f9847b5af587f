"""Summary tables for the terminal: a run's instances, and a grading report."""

from __future__ import annotations

from collections.abc import Sequence

from mdap.usage import format_cost

from .grading import GradeReport
from .run import SWEBenchSummary

__all__ = ["grade_table", "run_table"]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _yes(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def run_table(summary: SWEBenchSummary) -> str:
    """One row per finished instance, then the totals."""
    rows = [
        [r.instance_id, r.status, r.chosen or "-", str(r.patch_lines), _yes(r.resolved), f"{r.seconds:.1f}"]
        for r in summary.per_instance
    ]
    table = _table(["instance", "pipeline", "chosen", "patch lines", "resolved", "seconds"], rows)
    total = (
        f"resolved {summary.resolved}/{summary.instances} ({100 * summary.resolved_rate:.1f}%)"
        if summary.graded
        else "not graded (--no-grade)"
    )
    return (
        f"{table}\n{total}; {summary.finished} finished ({summary.resumed} resumed), {summary.empty_patches} empty "
        f"patches, {summary.errors} errors, {summary.samples:,} samples, cost {format_cost(summary.cost)}, "
        f"{summary.wall_seconds:,.1f} s"
    )


def grade_table(report: GradeReport) -> str:
    """One row per graded prediction, then the totals."""
    rows = []
    for iid, g in report.instances.items():
        f2p, p2p = g.tests_status.get("FAIL_TO_PASS", {}), g.tests_status.get("PASS_TO_PASS", {})

        def frac(part: dict[str, list[str]]) -> str:
            total = len(part.get("success", [])) + len(part.get("failure", []))
            return f"{len(part.get('success', []))}/{total}" if total else "-"

        error = g.error.splitlines()[0][:60] if g.error else ""
        rows.append([iid, _yes(g.patch_applied), frac(f2p), frac(p2p), _yes(g.resolved), error])
    table = _table(["instance", "applied", "FAIL_TO_PASS", "PASS_TO_PASS", "resolved", "error"], rows)
    return (
        f"{table}\nresolved {report.resolved_instances}/{report.total_instances} "
        f"({100 * report.resolved_rate:.1f}%); {report.submitted_instances} submitted, "
        f"{report.empty_patch_instances} empty patches, {report.error_instances} errors; grader: {report.grader}"
    )
