"""Run a command in a subprocess with a timeout and resource limits, killing its whole process group on timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mdap.errors import ToolError

__all__ = ["Limits", "run_limited"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of a tool subprocess.

    Args:
        timeout_s: wall-clock seconds before the process group is killed.
        cpu_s: CPU seconds (RLIMIT_CPU).
        memory_mb: address space in MiB (RLIMIT_AS).
        file_mb: largest file the process may write, in MiB (RLIMIT_FSIZE).
        max_output_chars: output beyond this is cut (the model is told how much was cut).
    """

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_mb: int = 64
    max_output_chars: int = 4000


def _preexec(limits: Limits) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec
        mb = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _env(cwd: Path) -> dict[str, str]:
    """A minimal environment: the tool sees none of the parent's variables (no keys, no tokens)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n...[cut {len(text) - limit} more characters]"


async def run_limited(argv: Sequence[str], *, cwd: Path, limits: Limits, stdin: str = "") -> tuple[int, str]:
    """Run ``argv`` in ``cwd`` under ``limits``; return (exit code, combined stdout+stderr, cut).

    Raises:
        ToolError: the process ran past ``timeout_s`` (it and its children are killed) or could not start.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=_env(cwd),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_preexec(limits),
            start_new_session=True,
        )
    except OSError as err:
        raise ToolError(f"could not start {argv[0]}: {err}") from err
    try:
        async with asyncio.timeout(limits.timeout_s):
            out, _ = await proc.communicate(stdin.encode())
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise ToolError(f"timed out after {limits.timeout_s:g}s and was killed; make the work smaller") from None
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    code = proc.returncode if proc.returncode is not None else -1
    return code, cut(out.decode(errors="replace"), limits.max_output_chars)
