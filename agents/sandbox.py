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
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mdap.errors import ConfigError, SandboxError

from ._cgroup import PidsGroup, pids_cgroup_root

__all__ = ["Completed", "Limits", "Sandbox", "cgroup_available", "cut"]

log = logging.getLogger("mdap.sandbox")

Backend = Literal["bubblewrap", "none"]

_FIX = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), or opt out explicitly with Sandbox.none() / "
    "--sandbox none (model-written code then runs on this machine unisolated)"
)
_ETC = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "host.conf",
    "ssl",
    "ca-certificates",
    "mime.types",
    "os-release",
    "debian_version",
    "python3",
    f"python3.{sys.version_info.minor}",
    "locale.alias",
)
"""The /etc entries a program may read (no shadow files, no host keys, no credentials)."""
_SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


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


class _Capture:
    """Keeps the first and last ``limit // 2`` bytes of a stream; what falls between is counted, not kept."""

    def __init__(self, limit: int) -> None:
        self.half = max(1, limit // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail += chunk
        over = len(self.tail) - self.half
        if over > 0:
            del self.tail[:over]
            self.dropped += over

    def text(self) -> str:
        head = self.head.decode(errors="replace")
        if not self.tail:
            return head
        tail = self.tail.decode(errors="replace")
        if not self.dropped:
            return head + tail
        return f"{head}\n...[{self.dropped} bytes of output dropped]...\n{tail}"


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n...[cut {len(text) - limit} more characters]"


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


def _python_roots() -> list[Path]:
    """The folders of the Python installation mdap runs under (a venv and its base), to bind read-only."""
    roots: list[Path] = []
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        path = Path(p).resolve()
        if path not in roots and path != Path("/usr") and not path.is_relative_to("/usr"):
            roots.append(path)
    exe = Path(sys.executable).resolve()
    if not any(exe.is_relative_to(r) for r in [*roots, Path("/usr")]):
        roots.append(exe.parent)
    return roots


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
        argv = self._bwrap_argv(["/bin/true" if os.path.exists("/bin/true") else "true"], cwd=None, env={})
        try:
            done = subprocess.run(argv, env={}, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"{self.bwrap} did not start ({err})"
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            return f"{self.bwrap} could not create its namespaces ({said[-1] if said else f'exit {done.returncode}'})"
        return None

    # ---- the command line --------------------------------------------------------------------------------------

    def _bwrap_argv(self, argv: Sequence[str], *, cwd: Path | None, env: Mapping[str, str]) -> list[str]:
        lim = self.limits
        out = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        out += ["--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
        for name in _SYSTEM_DIRS:
            path = Path("/") / name
            if path.is_symlink():
                out += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                out += ["--ro-bind", str(path), str(path)]
        for name in _ETC:
            out += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        for root in [*_python_roots(), *self.read_only]:
            out += ["--ro-bind", str(root), str(root)]
        out += ["--proc", "/proc", "--dev", "/dev"]
        out += ["--size", str(lim.file_mb * 1024 * 1024), "--tmpfs", "/tmp"]
        out += ["--size", str(lim.file_mb * 1024 * 1024), "--tmpfs", "/dev/shm"]
        if cwd is not None:
            out += ["--bind", str(cwd), str(cwd), "--chdir", str(cwd)]
        out += ["--remount-ro", "/"]  # the sandbox's own root (a tmpfs holding the mount points) is not writable
        out.append("--clearenv")
        for key, value in env.items():
            out += ["--setenv", key, value]
        return [*out, "--", *argv]

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
            return cwd, self._bwrap_argv(argv, cwd=cwd, env=child_env), {}, group
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
        capture = _Capture(lim.max_output_bytes)
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
            raise _start_error(exec_argv[0], err) from err
        try:
            feeder = asyncio.create_task(_feed(proc, data))
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
            _kill(proc.pid, group)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        return self._completed(-9 if timed_out else (proc.returncode or 0), capture, timed_out, group)

    def run_sync(
        self,
        argv: Sequence[str],
        *,
        cwd: str | Path,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> Completed:
        """:meth:`run` for synchronous callers (SWE-bench test runs, run in a worker thread)."""
        lim = limits or self.limits
        workdir, exec_argv, exec_env, group = self._prepare(argv, cwd, env, lim)
        capture = _Capture(lim.max_output_bytes)
        try:
            proc = subprocess.Popen(
                exec_argv,
                cwd=workdir,
                env=exec_env,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=self._preexec(lim, group),
                start_new_session=True,
            )
        except OSError as err:
            if group is not None:
                group.close()
            raise _start_error(exec_argv[0], err) from err
        timed_out = False
        try:
            if stdin is not None:
                data = stdin.encode() if isinstance(stdin, str) else stdin
                threading.Thread(target=_feed_sync, args=(proc, data), daemon=True).start()
            timed_out = not _drain(proc, capture, time.monotonic() + lim.timeout_s)
        finally:
            _kill(proc.pid, group)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        return self._completed(-9 if timed_out else proc.returncode, capture, timed_out, group)

    def _completed(self, code: int, capture: _Capture, timed_out: bool, group: PidsGroup | None) -> Completed:
        hit = False
        if group is not None:
            hit = group.limit_hit()
            group.close()
        return Completed(code, capture.text(), timed_out, capture.dropped, hit)


def _start_error(program: str, err: OSError) -> Exception:
    from mdap.errors import ToolError

    return ToolError(f"could not start {program}: {err}")


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    if proc.stdin is None:
        return
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        if data:
            proc.stdin.write(data)
            await proc.stdin.drain()
        proc.stdin.close()


def _feed_sync(proc: subprocess.Popen[bytes], data: bytes) -> None:
    if proc.stdin is None:
        return
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.write(data)
        proc.stdin.close()


def _drain(proc: subprocess.Popen[bytes], capture: _Capture, deadline: float) -> bool:
    """Read ``proc``'s output into ``capture`` until it ends (True) or ``deadline`` passes (False)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if not sel.select(timeout=left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            capture.feed(chunk)
    left = deadline - time.monotonic()
    try:
        proc.wait(timeout=max(left, 0.001))
    except subprocess.TimeoutExpired:
        return False
    return True


def _kill(pid: int, group: PidsGroup | None) -> None:
    """Kill the call's process group and every process left in its cgroup (double forks, ``setsid``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if group is not None:
        group.kill_all()


def cgroup_available() -> bool:
    """Whether a pids cgroup can be made here (the process limit then holds for root too)."""
    return pids_cgroup_root() is not None
