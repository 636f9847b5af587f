"""SWE-bench's resolution rule: an instance is resolved iff every FAIL_TO_PASS test passes and every
PASS_TO_PASS test still passes.

A FAIL_TO_PASS test passes when its status is PASSED or XFAIL; a PASS_TO_PASS test is maintained when it is
PASSED, XFAIL or SKIPPED (a skip is not a regression); a test missing from the run counts as failed. Where
the ``swebench`` package is installed its own grading functions are used (``grader()`` says which).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["TestsReport", "grader", "grade_tests"]

TestsReport = dict[str, dict[str, list[str]]]
"""``{"FAIL_TO_PASS": {"success": [...], "failure": [...]}, "PASS_TO_PASS": {...}}``."""

_PASS = ("PASSED", "XFAIL")
_MAINTAINED = ("PASSED", "XFAIL", "SKIPPED")

Grader = Callable[[Mapping[str, str], Sequence[str], Sequence[str]], tuple[TestsReport, bool]]


def _mdap_grade(statuses: Mapping[str, str], f2p: Sequence[str], p2p: Sequence[str]) -> tuple[TestsReport, bool]:
    report: TestsReport = {
        "FAIL_TO_PASS": {"success": [], "failure": []},
        "PASS_TO_PASS": {"success": [], "failure": []},
    }
    for test in f2p:
        report["FAIL_TO_PASS"]["success" if statuses.get(test) in _PASS else "failure"].append(test)
    for test in p2p:
        report["PASS_TO_PASS"]["success" if statuses.get(test) in _MAINTAINED else "failure"].append(test)
    resolved = not report["FAIL_TO_PASS"]["failure"] and not report["PASS_TO_PASS"]["failure"]
    return report, resolved


@functools.cache
def _swebench() -> tuple[str, Grader] | None:
    try:
        from importlib.metadata import version

        from swebench.harness.constants import FAIL_TO_PASS, PASS_TO_PASS, ResolvedStatus
        from swebench.harness.grading import get_eval_tests_report, get_resolution_status
    except Exception:  # not installed, or an install whose optional parts fail to import: use our rules
        return None

    def grade(statuses: Mapping[str, str], f2p: Sequence[str], p2p: Sequence[str]) -> tuple[TestsReport, bool]:
        gold: dict[str, Any] = {FAIL_TO_PASS: list(f2p), PASS_TO_PASS: list(p2p)}
        full = get_eval_tests_report(dict(statuses), gold)
        report: TestsReport = {
            "FAIL_TO_PASS": {k: list(v) for k, v in full[FAIL_TO_PASS].items()},
            "PASS_TO_PASS": {k: list(v) for k, v in full[PASS_TO_PASS].items()},
        }
        return report, get_resolution_status(full) == ResolvedStatus.FULL.value

    return f"swebench {version('swebench')}", grade


def grader(kind: str = "auto") -> tuple[str, Grader]:
    """The grading function and its name: ``"swebench"`` (the package's), ``"mdap"`` (ours), or ``"auto"``
    (the package's where it is installed, else ours).

    Raises:
        ImportError: ``"swebench"`` was asked for and the package is not installed.
    """
    if kind == "mdap":
        return "mdap", _mdap_grade
    found = _swebench()
    if found is not None:
        return found
    if kind == "swebench":
        raise ImportError("the swebench package is not installed: pip install 'mdap[swebench-harness]'")
    return "mdap", _mdap_grade


def grade_tests(
    statuses: Mapping[str, str], f2p: Sequence[str], p2p: Sequence[str], *, kind: str = "auto"
) -> tuple[str, TestsReport, bool]:
    """Grade one run: (grader name, per-list success/failure, resolved)."""
    name, grade = grader(kind)
    report, resolved = grade(statuses, f2p, p2p)
    return name, report, resolved
