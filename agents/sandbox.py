"""The sandbox every process mdap starts on a model's behalf runs in.

Model-written code is untrusted: the python and shell tools, SWE-bench's test runs and grading all go through a
:class:`Sandbox`. The default backend is bubblewrap (``bwrap``, Debian package ``bubblewrap``):

- new pid, net, ipc, uts, user and cgroup namespaces: no network (the loopback is empty, so the host's Redis or
  model server is unreachable), no view of host processes;
- the system read-only (``/usr``, the libraries, a short list of ``/etc`` files), the Python installation mdap runs
  under bound read-only, only the working directory writable, a private ``/tmp`` and ``/dev/shm`` of bounded size;
- an empty environment: bwrap itself is started with none (``--clearenv`` alone would leave the parent's
  variables readable in ``/proc/1/environ`` inside), the program gets only ``PATH``, ``HOME``, ``LANG`` and what
  the caller passes;
- bounded: process count (a pids cgroup where one can be made, else ``RLIMIT_NPROC``), address space, CPU time,
  file size and wall time; every process of a call is killed when the call returns (the pid namespace dies with
  its first process, and the cgroup is emptied); output is read incrementally and capped in bytes.

:meth:`Sandbox.none` is the explicit opt-out: the same limits and a clean environment, but no namespaces. It logs
a warning once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import resource
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mdap.errors import ConfigError, SandboxError

from ._bwrap import bwrap_command
from ._cgroup import PidsGroup, pids_cgroup_root
from ._spawn import Capture, cut, feed, kill, start_error

__all__ = ["Completed", "Limits", "Sandbox", "cgroup_available", "cut"]

log = logging.getLogger("mdap.sandbox")

Backend = Literal["bubblewrap", "none"]

_FIX = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), or opt out explicitly with Sandbox.none() / "
    "--sandbox none (model-written code then runs on this machine unisolated)"
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of one sandboxed call.

    Args:
        timeout_s: wall-clock seconds before every process of the call is killed.
        cpu_s: CPU seconds per process (RLIMIT_CPU).
        memory_mb: address space per process in MiB (RLIMIT_AS).
        file_mb: largest file a process may write, in MiB (RLIMIT_FSIZE); also the size of the private ``/tmp``.
        max_processes: processes and threads alive at once in the call.
        max_output_bytes: output the parent keeps (its first and last halves; the middle is dropped as it arrives).
        max_output_chars: output a tool shows the model (longer text is cut, saying how much).
    """

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_mb: int = 64
    max_processes: int = 64
    max_output_bytes: int = 1_000_000
    max_output_chars: int = 4000

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"Limits.{name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True, slots=True)
class Completed:
    """A finished sandboxed call.

    Attributes:
        code: exit code (negative: killed by that signal; -9 after a timeout).
        output: stdout and stderr together, decoded; when over ``max_output_bytes``, its head and tail with a note.
        timed_out: the call ran past ``timeout_s`` and was killed.
        dropped_bytes: output bytes not kept.
        process_limit_hit: a fork failed because ``max_processes`` was reached (when the backend can tell).
    """

    code: int
    output: str
    timed_out: bool = False
    dropped_bytes: int = 0
    process_limit_hit: bool = False


_warned_none = False
_warn_lock = threading.Lock()


def _warn_unsandboxed() -> None:
    global _warned_none
    with _warn_lock:
        if _warned_none:
            return
        _warned_none = True
    log.warning(
        "mdap: the sandbox is OFF (Sandbox.none() / --sandbox none): model-written code runs on this machine with "
        "your files, network and processes in reach. Use it only for code you trust."
    )


_default: Sandbox | None = None
_checked: dict[str, str | None] = {}  # bwrap path -> None (works) or the reason it does not


class Sandbox:
    """Runs untrusted programs isolated from the host (bubblewrap) or, when opted out explicitly, without isolation.

    Args:
        backend: ``"bubblewrap"`` (the default) or ``"none"`` (prefer :meth:`none`, which says so).
        limits: the default limits of a call (each call may pass its own).
        bwrap: the bwrap executable (default: found on ``PATH``).
        read_only: more host folders to bind read-only at the same path (a tool's data, say).

    Raises:
        ConfigError: an unknown backend.
    """

    def __init__(
        self,
        backend: Backend = "bubblewrap",
        *,
        limits: Limits | None = None,
        bwrap: str | None = None,
        read_only: Sequence[str | Path] = (),
    ) -> None:
        if backend not in ("bubblewrap", "none"):
            raise ConfigError(f"unknown sandbox backend {backend!r}; use 'bubblewrap' or 'none'")
        self.backend: Backend = backend
        self.limits = limits or Limits()
        self.bwrap = bwrap or shutil.which("bwrap") or "bwrap"
        self.read_only = tuple(Path(p).resolve() for p in read_only)
        if backend == "none":
            _warn_unsandboxed()

    @classmethod
    def none(cls, *, limits: Limits | None = None) -> Sandbox:
        """The explicit opt-out: limits and a clean environment, but no isolation. Logs a warning once per process."""
        return cls("none", limits=limits)

    @classmethod
    def default(cls) -> Sandbox:
        """The sandbox of tools built without one: bubblewrap, unless :meth:`set_default` said otherwise (the
        CLI's ``--sandbox``)."""
        global _default
        with _warn_lock:
            if _default is None:
                _default = cls("bubblewrap")
            return _default

    @staticmethod
    def set_default(sandbox: Sandbox | None) -> None:
        """Make ``sandbox`` the process's default (None: back to bubblewrap)."""
        global _default
        with _warn_lock:
            _default = sandbox

    @classmethod
    def named(cls, name: str, *, limits: Limits | None = None) -> Sandbox:
        """The sandbox a CLI flag names: ``bubblewrap`` or ``none``."""
        if name not in ("bubblewrap", "none"):
            raise ConfigError(f"--sandbox must be 'bubblewrap' or 'none', got {name!r}")
        return cls(name, limits=limits)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Sandbox({self.backend!r})"

    @property
    def isolated(self) -> bool:
        """Whether programs run isolated from the host."""
        return self.backend == "bubblewrap"

    # ---- availability ------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Make sure the backend works here (bwrap found and able to make its namespaces); cached per process.

        Raises:
            SandboxError: it does not, naming the fix (install bubblewrap, or the explicit opt-out).
        """
        if not self.isolated:
            return
        if self.bwrap not in _checked:
            _checked[self.bwrap] = self._probe()
        reason = _checked[self.bwrap]
        if reason is not None:
            raise SandboxError(f"the sandbox cannot run model-written code here: {reason}; {_FIX}")

    def _probe(self) -> str | None:
        if shutil.which(self.bwrap) is None:
            return f"{self.bwrap} not found"
        argv = bwrap_command(
            self.bwrap,
            ["/bin/true" if os.path.exists("/bin/true") else "true"],
            cwd=None,
            env={},
            tmp_mb=self.limits.file_mb,
        )
        try:
            done = subprocess.run(argv, env={}, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"{self.bwrap} did not start ({err})"
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            return f"{self.bwrap} could not create its namespaces ({said[-1] if said else f'exit {done.returncode}'})"
        return None

    def _env(self, cwd: Path, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if not self.isolated:
            env["HOME"] = str(cwd)
            env.pop("TMPDIR")
        env.update(extra or {})
        return env

    def _prepare(
        self, argv: Sequence[str], where: str | Path, env: Mapping[str, str] | None, limits: Limits
    ) -> tuple[Path, list[str], dict[str, str], PidsGroup | None]:
        if not argv:
            raise ConfigError("Sandbox.run: no command given")
        self.check()
        cwd = Path(os.path.realpath(where))
        if not cwd.is_dir():
            raise ConfigError(f"Sandbox.run: the working folder {cwd} is not a directory")
        child_env = self._env(cwd, env)
        group = PidsGroup.make(limits.max_processes)
        if self.isolated:
            # bwrap starts with an empty environment: the program's own variables go through --setenv only.
            command = bwrap_command(
                self.bwrap, argv, cwd=cwd, env=child_env, tmp_mb=limits.file_mb, read_only=self.read_only
            )
            return cwd, command, {}, group
        return cwd, list(argv), child_env, group

    def _preexec(self, limits: Limits, group: PidsGroup | None) -> Callable[[], None]:
        mb = 1024 * 1024
        nproc = group is None and os.geteuid() != 0  # root ignores RLIMIT_NPROC; the cgroup is the limit then
        procs_file = group.procs_file if group is not None else None

        def apply() -> None:  # in the child, between fork and exec: no locks, no logging
            if procs_file is not None:
                with open(procs_file, "w") as fh:
                    fh.write(str(os.getpid()))
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if nproc:
                resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))

        return apply

    # ---- running -----------------------------------------------------------------------------------------------

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | Path,
        stdin: str | bytes = b"",
        env: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> Completed:
        """Run ``argv`` in the sandbox with ``cwd`` as the only writable folder; every process it started is gone
        when this returns (also when the caller is cancelled).

        Raises:
            SandboxError: the backend cannot run here.
            ToolError: the program could not be started.
        """
        lim = limits or self.limits
        workdir, exec_argv, exec_env, group = self._prepare(argv, cwd, env, lim)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        capture = Capture(lim.max_output_bytes)
        timed_out = False
        try:
            proc = await asyncio.create_subprocess_exec(
                *exec_argv,
                cwd=workdir,
                env=exec_env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=self._preexec(lim, group),
                start_new_session=True,
            )
        except OSError as err:
            if group is not None:
                group.close()
            raise start_error(exec_argv[0], err) from err
        try:
            feeder = asyncio.create_task(feed(proc, data))
            try:
                async with asyncio.timeout(lim.timeout_s):
                    assert proc.stdout is not None
                    while chunk := await proc.stdout.read(65536):
                        capture.feed(chunk)
                    await proc.wait()
            except TimeoutError:
                timed_out = True
            finally:
                feeder.cancel()
        finally:
            kill(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            if group is not None:  # emptying a cgroup polls and sleeps: not on the event loop
                await asyncio.to_thread(group.kill_all)
            await proc.wait()
        code = -9 if timed_out else (proc.returncode or 0)
        hit = False
        if group is not None:
            hit = group.limit_hit()
            await asyncio.to_thread(group.close)
        return Completed(code, capture.text(), timed_out, capture.dropped, hit)

    def run_sync(
        self,
        argv: Sequence[str],
        *,
        cwd: str | Path,
        stdin: str | bytes = b"",
        env: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> Completed:
        """:meth:`run` for synchronous callers (SWE-bench's test runs, from worker threads), on an event loop of
        its own.

        Raises:
            ConfigError: called from a running event loop (``await`` :meth:`run` there).
            SandboxError, ToolError: as :meth:`run`.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(argv, cwd=cwd, stdin=stdin, env=env, limits=limits))
        raise ConfigError("Sandbox.run_sync() was called inside an event loop; use `await sandbox.run(...)` there")


def cgroup_available() -> bool:
    """Whether a pids cgroup can be made here (the process limit then holds for root too)."""
    return pids_cgroup_root() is not None
