"""A pids cgroup per sandboxed call: the process limit that holds for root too, and a way to kill every process a
call started, wherever it moved (``setsid``, double forks). cgroup v1 (``/sys/fs/cgroup/pids``) and v2 (a
delegated subtree with the pids controller); where neither can be written, :func:`pids_cgroup_root` is None and
the sandbox falls back to ``RLIMIT_NPROC``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
from pathlib import Path

__all__ = ["PidsGroup", "pids_cgroup_root"]

_counter = itertools.count()
_root: Path | None = None
_root_known = False
_lock = threading.Lock()


def _own_cgroup(controller: str) -> str | None:
    """This process's cgroup path for ``controller`` (v1), or its v2 path when ``controller`` is empty."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (controller and controller in controllers.split(",")) or (not controller and controllers == ""):
            return path
    return None


def _writable_parent(base: Path) -> Path | None:
    """``base`` if a child cgroup with a ``pids.max`` can be made and removed in it."""
    probe = base / f"mdap-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return None
    try:
        ok = (probe / "pids.max").exists() and (probe / "cgroup.procs").exists()
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()
    return base if ok else None


def _find_root() -> Path | None:
    v1 = Path("/sys/fs/cgroup/pids")
    if (v1 / "cgroup.procs").exists():
        own = _own_cgroup("pids")
        if own is not None:
            found = _writable_parent(v1 / own.lstrip("/"))
            if found is not None:
                return found
    v2 = Path("/sys/fs/cgroup")
    if (v2 / "cgroup.controllers").exists():
        own = _own_cgroup("")
        if own is not None:
            base = v2 / own.lstrip("/")
            try:
                if "pids" in (base / "cgroup.subtree_control").read_text().split():
                    return _writable_parent(base)
            except OSError:
                return None
    return None


def pids_cgroup_root() -> Path | None:
    """The cgroup under which per-call pids cgroups are made, or None where none can be (found once)."""
    global _root, _root_known
    with _lock:
        if not _root_known:
            _root = _find_root()
            _root_known = True
        return _root


class PidsGroup:
    """One call's cgroup: at most ``limit`` tasks; :meth:`kill_all` empties it, :meth:`close` removes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.procs_file = str(path / "cgroup.procs")

    @classmethod
    def make(cls, limit: int) -> PidsGroup | None:
        """A new group limited to ``limit`` tasks, or None where cgroups cannot be made here."""
        root = pids_cgroup_root()
        if root is None:
            return None
        path = root / f"mdap-sandbox-{os.getpid()}-{next(_counter)}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(limit))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path)

    def pids(self) -> list[int]:
        """The processes in the group now."""
        try:
            return [int(p) for p in Path(self.procs_file).read_text().split()]
        except (OSError, ValueError):
            return []

    def limit_hit(self) -> bool:
        """Whether a fork failed on the limit (``pids.events``: ``max N``)."""
        try:
            events = (self.path / "pids.events").read_text().split()
        except OSError:
            return False
        return len(events) >= 2 and events[0] == "max" and events[1] != "0"

    def kill_all(self, timeout_s: float = 5.0) -> None:
        """SIGKILL every process in the group until it is empty (new forks race the loop, so it repeats)."""
        kill_file = self.path / "cgroup.kill"
        if kill_file.exists():  # cgroup v2: one write kills the whole group
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        deadline = time.monotonic() + timeout_s
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def close(self) -> None:
        """Empty the group and remove it."""
        self.kill_all()
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return  # a zombie not yet reaped by its parent; the empty group is left behind, harmless
                time.sleep(0.01)
