"""Run a repository's pytest tests in a checkout and read each test's status from the ``-rA`` summary.

Tests run with the interpreter that runs mdap (``sys.executable -m pytest``), in a subprocess with a timeout
that kills the whole process group. Test ids are pytest node ids as SWE-bench lists them
(``tests/test_x.py::test_name[param]``); the test files they name are run, and each id's status is looked up
in pytest's short summary (``PASSED id``, ``FAILED id - message``, ...).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ._proc import run

__all__ = ["STATUSES", "TestRun", "files_of_tests", "parse_pytest_summary", "run_pytest"]

STATUSES = ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS")
"""The statuses pytest's ``-rA`` summary reports, as SWE-bench's pytest log parser reads them."""

_LINE = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)")
_SKIP_COUNT = re.compile(r"^\[\d+\]$")


def parse_pytest_summary(log: str) -> dict[str, str]:
    """Map test id -> status from the lines of pytest's ``-rA`` summary (the last status of an id wins)."""
    out: dict[str, str] = {}
    for line in log.splitlines():
        m = _LINE.match(line)
        if m and not _SKIP_COUNT.match(m.group(2)):  # "SKIPPED [1] file:line: reason" names no test
            out[m.group(2)] = m.group(1)
    return out


def files_of_tests(test_ids: Iterable[str]) -> list[str]:
    """The files that hold ``test_ids`` (the part before ``::``), in first-seen order."""
    return list(dict.fromkeys(t.split("::", 1)[0] for t in test_ids if t.strip()))


@dataclass(slots=True)
class TestRun:
    """One pytest run: the status of each test id it reported, its log, and how it ended."""

    __test__ = False  # not a pytest test class, whatever its name

    statuses: dict[str, str] = field(default_factory=dict)
    log: str = ""
    exit_code: int = 0
    timed_out: bool = False


def _env(extra: Mapping[str, str] | None, autoload: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONSTARTUP")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONHASHSEED"] = "0"
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    if extra:
        env.update(extra)
    return env


def run_pytest(
    checkout: Path,
    targets: Iterable[str],
    *,
    timeout_s: float = 300.0,
    env: Mapping[str, str] | None = None,
    plugin_autoload: bool = False,
) -> TestRun:
    """Run ``sys.executable -m pytest -rA targets`` in ``checkout`` and parse the summary.

    Args:
        checkout: the repository's work tree (the current directory of the run).
        targets: test files or node ids.
        timeout_s: wall-clock limit; past it the run and its children are killed (``timed_out``).
        env: extra environment variables.
        plugin_autoload: let pytest load every plugin installed in this environment. Off by default: the
            plugins of mdap's own dependencies are not the repository's, and some take seconds to import.
    """
    argv = [sys.executable, "-m", "pytest", "-rA", "--tb=short", "-p", "no:cacheprovider", *targets]
    done = run(argv, cwd=checkout, timeout_s=timeout_s, env=_env(env, plugin_autoload))
    return TestRun(parse_pytest_summary(done.output), done.output, done.code, done.timed_out)
