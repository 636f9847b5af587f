"""Run a command with a timeout that kills its whole process group, and git helpers built on it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mdap.errors import ConfigError, ToolError

__all__ = ["Done", "GitError", "checkout_at", "diff_all", "git", "git_apply", "resolve_commit", "run"]

_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "mdap",
    "GIT_AUTHOR_EMAIL": "mdap@localhost",
    "GIT_COMMITTER_NAME": "mdap",
    "GIT_COMMITTER_EMAIL": "mdap@localhost",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "LC_ALL": "C",
}


_JUNK = (":(exclude,glob)**/__pycache__/**", ":(exclude,glob)**/*.pyc", ":(exclude,glob).pytest_cache/**")
"""Files test runs leave behind that are never part of a patch."""


class GitError(ToolError):
    """A git command failed (the message has its output). Callers turn it into a ConfigError or a grading error;
    one that escapes is an :class:`~mdap.errors.MdapError` (a failed tool), never a bare traceback."""


@dataclass(frozen=True, slots=True)
class Done:
    """A finished command: exit code (-9 after a timeout), combined stdout+stderr, whether it timed out."""

    code: int
    output: str
    timed_out: bool = False


def run(
    argv: Sequence[str],
    *,
    cwd: Path,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> Done:
    """Run ``argv`` in ``cwd``; on timeout kill its process group (children too) and say so."""
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(stdin.encode() if stdin is not None else None, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return Done(-9, out.decode(errors="replace"), timed_out=True)
    return Done(proc.returncode, out.decode(errors="replace"))


def git(
    args: Sequence[str],
    *,
    cwd: Path,
    stdin: str | None = None,
    timeout_s: float = 300.0,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run ``git args`` in ``cwd`` (with ``env`` added to the environment) and return its output.

    Raises:
        GitError: a non-zero exit or a timeout.
    """
    env = {**os.environ, **_GIT_ENV, **(env or {})}
    done = run(["git", *args], cwd=cwd, timeout_s=timeout_s, env=env, stdin=stdin)
    if done.code != 0:
        what = "timed out" if done.timed_out else f"failed (exit {done.code})"
        raise GitError(f"git {' '.join(args[:3])} {what}: {done.output.strip()[-1500:]}")
    return done.output


def resolve_commit(source: Path, commit: str) -> str:
    """The full sha of ``commit`` in the repository ``source``.

    Raises:
        ConfigError: the commit is not in that repository.
    """
    try:
        return git(["rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"], cwd=source).strip()
    except GitError:
        raise ConfigError(
            f"commit {commit} is not in the repository at {source}; fetch it there (the repos directory must "
            "hold clones that contain every instance's base_commit)"
        ) from None


def checkout_at(source: Path, commit: str, dest: Path) -> str:
    """Make ``dest`` a fresh git checkout of ``commit`` from the local repository ``source`` (history up to that
    commit only, so later fixes are not visible). Returns the full sha.

    Raises:
        ConfigError: the commit is not in ``source``.
        GitError: git failed.
    """
    sha = resolve_commit(source, commit)
    dest.mkdir(parents=True, exist_ok=False)
    git(["init", "-q"], cwd=dest)
    git(["fetch", "-q", "--no-tags", "--depth", "1", str(source.resolve()), sha], cwd=dest)
    git(["checkout", "-q", "--detach", sha], cwd=dest)
    return sha


def git_apply(repo: Path, patch: str) -> None:
    """Apply ``patch`` in ``repo``: ``git apply``, then, if that fails, ``git apply -C1 --recount`` (only one line
    of context must match, hunk counts recomputed), as SWE-bench also retries with a more lenient apply.

    Raises:
        GitError: the patch does not apply.
    """
    if not patch.strip():
        return
    text = patch if patch.endswith("\n") else patch + "\n"
    try:
        git(["apply", "--whitespace=nowarn", "-"], cwd=repo, stdin=text)
    except GitError:
        git(["apply", "--whitespace=nowarn", "--recount", "-C1", "-"], cwd=repo, stdin=text)


def diff_all(repo: Path, base: str = "HEAD") -> str:
    """Every change in ``repo``'s work tree against ``base``, new files included, as a ``git diff`` patch."""
    git(["add", "-A", "--", ".", *_JUNK], cwd=repo)
    return git(["-c", "core.quotepath=off", "diff", "--cached", "--no-color", "--no-ext-diff", base], cwd=repo)
