"""Run a repository's pytest tests in a checkout and read each test's status from the ``-rA`` summary.

Tests run with the interpreter that runs mdap (``sys.executable -m pytest``) inside the sandbox
(:class:`mdap.agents.Sandbox`, bubblewrap by default): the checkout is the only writable folder, the environment
holds only what pytest needs, there is no network, and every process the run started is killed when it ends.
Test ids are pytest node ids as SWE-bench lists them
(``tests/test_x.py::test_name[param]``); the test files they name are run, and each id's status is looked up
in pytest's short summary (``PASSED id``, ``FAILED id - message``, ...).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mdap.agents import Limits, Sandbox

__all__ = ["STATUSES", "TestRun", "files_of_tests", "parse_pytest_summary", "run_pytest", "run_limits"]

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
    """What pytest needs and nothing of mdap's own environment (no keys, no tokens)."""
    env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    if extra:
        env.update(extra)
    return env


def run_limits(timeout_s: float) -> Limits:
    """The sandbox limits of one test run: ``timeout_s`` of wall time, as much CPU per process, 4 GiB of address
    space, 256 MiB files, 256 processes, and 8 MB of log kept (its head and tail: pytest's summary is at the end).
    """
    return Limits(
        timeout_s=timeout_s,
        cpu_s=max(1, int(timeout_s)),
        memory_mb=4096,
        file_mb=256,
        max_processes=256,
        max_output_bytes=8_000_000,
    )


def run_pytest(
    checkout: Path,
    targets: Iterable[str],
    *,
    timeout_s: float = 300.0,
    env: Mapping[str, str] | None = None,
    plugin_autoload: bool = False,
    sandbox: Sandbox | None = None,
) -> TestRun:
    """Run ``sys.executable -m pytest -rA targets`` in ``checkout``, in the sandbox, and parse the summary.

    Args:
        checkout: the repository's work tree (the current directory of the run).
        targets: test files or node ids.
        timeout_s: wall-clock limit; past it the run and its children are killed (``timed_out``).
        env: extra environment variables.
        plugin_autoload: let pytest load every plugin installed in this environment. Off by default: the
            plugins of mdap's own dependencies are not the repository's, and some take seconds to import.
        sandbox: where the tests run (default: :meth:`~mdap.agents.Sandbox.default`, bubblewrap).

    Raises:
        SandboxError: the sandbox cannot run here.
    """
    argv = [sys.executable, "-m", "pytest", "-rA", "--tb=short", "-p", "no:cacheprovider", *targets]
    box = sandbox if sandbox is not None else Sandbox.default()
    done = box.run_sync(argv, cwd=checkout, env=_env(env, plugin_autoload), limits=run_limits(timeout_s))
    return TestRun(parse_pytest_summary(done.output), done.output, done.code, done.timed_out)
