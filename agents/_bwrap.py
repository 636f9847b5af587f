"""The bubblewrap command line of one sandboxed call: what is bound read-only, what is writable, what is private."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["bwrap_command", "python_roots"]

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


def python_roots() -> list[Path]:
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


def bwrap_command(
    bwrap: str,
    argv: Sequence[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str],
    tmp_mb: int,
    read_only: Sequence[Path] = (),
) -> list[str]:
    """``bwrap`` running ``argv`` with new namespaces (no network), the system and the Python installation
    read-only, ``cwd`` the only writable host folder, private ``/tmp`` and ``/dev/shm`` of ``tmp_mb`` MiB, and
    exactly ``env`` as the environment. bwrap itself must be started with an empty environment."""
    size = str(tmp_mb * 1024 * 1024)
    out = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    out += ["--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    for name in _SYSTEM_DIRS:
        path = Path("/") / name
        if path.is_symlink():
            out += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            out += ["--ro-bind", str(path), str(path)]
    for name in _ETC:
        out += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for root in [*python_roots(), *read_only]:
        out += ["--ro-bind", str(root), str(root)]
    out += ["--proc", "/proc", "--dev", "/dev"]
    out += ["--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", "/dev/shm"]
    if cwd is not None:
        out += ["--bind", str(cwd), str(cwd), "--chdir", str(cwd)]
    out += ["--remount-ro", "/"]  # the sandbox's own root (a tmpfs holding the mount points) is not writable
    out.append("--clearenv")
    for key, value in env.items():
        out += ["--setenv", key, value]
    return [*out, "--", *argv]
