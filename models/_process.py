"""Server subprocesses that never outlive us: own process group, stopped as a group, stopped at exit.

A server runs in a new session (its own process group), so stopping it also stops the worker processes it
forks (vLLM's engine core). Every running server is remembered and stopped by an ``atexit`` hook; on Linux a
server started from the main thread also gets SIGTERM from the kernel if our process dies without running it
(``PR_SET_PDEATHSIG``, set by a tiny launcher that then execs the real command).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = ["ServerProcess", "free_port", "log_tail"]

# Sets the parent-death signal, then replaces itself with the real command (argv[1:]).
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"  # 1 = PR_SET_PDEATHSIG
    "if os.getppid() == int(os.environ.pop('MDAP_PARENT_PID', '0')):\n"
    "    os.execvp(sys.argv[1], sys.argv[1:])\n"
)

# Strong references: a running server is stopped at exit even when the object that started it is gone.
_running: set[ServerProcess] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return "\n".join("    " + line for line in tail) if tail else "(the log is empty)"


class ServerProcess:
    """A command running in its own process group, its output appended to ``log``.

    Args:
        argv: the command.
        log: file that receives stdout and stderr.
        env: the environment (None = ours).
    """

    def __init__(self, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        env_dict = dict(os.environ if env is None else env)
        command = self.argv
        if sys.platform == "linux" and threading.current_thread() is threading.main_thread():
            # The kernel's parent-death signal follows the thread that forks: only safe from the main thread.
            env_dict["MDAP_PARENT_PID"] = str(os.getpid())
            command = [sys.executable, "-c", _LAUNCHER, *self.argv]
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file: IO[bytes] = log.open("ab")
        try:
            self.popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=env_dict,
                start_new_session=True,
            )
        except OSError:
            self._log_file.close()
            raise
        _running.add(self)

    @property
    def pid(self) -> int:
        """The process id (also the process group id)."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the main process is still running."""
        return self.popen.poll() is None

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM the whole group, SIGKILL it after ``grace_s``; return the exit code. Idempotent."""
        try:
            if self.alive():
                self._signal_group(signal.SIGTERM)
                try:
                    self.popen.wait(grace_s)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    self.popen.wait(10)
            # Workers the server forked may outlive it; the group still names them.
            self._signal_group(signal.SIGKILL)
        finally:
            _running.discard(self)
            self._log_file.close()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the whole group at once (what a crash looks like to clients)."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(10)

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
            os.killpg(self.popen.pid, sig)


@atexit.register
def _stop_all() -> None:
    for proc in list(_running):
        proc.stop(grace_s=5.0)
