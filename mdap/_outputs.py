"""Output paths: checked before a run starts, written atomically, and a full disk named as such.

Every command checks its output flags (``--report``, ``--trace``, ``--out``, ``--checkpoint``, ``--run-dir``)
with :func:`check_output_file` / :func:`check_output_dir` before its first sample: a file flag given a
directory, a directory flag given a file, a missing or read-only parent is a :class:`~mdap.errors.ConfigError`
(exit 2) naming the flag, the path and the problem.

Reports and summaries are written with :func:`write_atomic` (a temporary file in the same directory, fsync,
``os.replace``): a crash or a full disk leaves the previous file (or none), never half of one or an empty one.
A write that fails raises :class:`~mdap.errors.OutputError` (exit 1) naming the path; on a full disk the
message says so and how to go on (:func:`disk_full_error`, :func:`guard_outputs` for the writes of a run).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sqlite3
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from mdap.errors import ConfigError, OutputError

__all__ = [
    "RERUN",
    "check_output_dir",
    "check_output_file",
    "disk_almost_full",
    "disk_full_error",
    "guard_outputs",
    "is_disk_full",
    "mentions_disk_full",
    "output_error",
    "write_atomic",
    "writing",
]

RERUN = "free space and rerun with --resume"
"""What a disk-full message tells the user to do (commands without ``--resume`` pass their own)."""

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_FULL_WORDS = ("no space left on device", "out of diskspace", "disk quota exceeded", "database or disk is full")
_WRITE_WORDS = ("unable to write", "could not write", "cannot write", "write error", "short write")


def _existing_ancestor(path: Path) -> Path:
    """The nearest ancestor of ``path`` that exists (``path`` itself excluded)."""
    parent = path.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    return parent


def _probe(folder: Path, flag: str, path: Path) -> None:
    """Create and delete a file in ``folder``: the one sure test (``os.access`` says yes to root on /proc)."""
    name = folder / f".mdap-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        if err.errno in _FULL:
            raise output_error(err, path) from None
        raise ConfigError(f"{flag} {path}: cannot create files in {folder} ({err.strerror or err})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def _parent_dir(path: Path, flag: str, *, make_parents: bool) -> Path:
    """The directory ``path`` will be created in (or its nearest existing ancestor with ``make_parents``)."""
    parent = path.parent
    if not os.path.lexists(parent):
        if not make_parents:
            raise ConfigError(f"{flag} {path}: directory {parent} does not exist")
        parent = _existing_ancestor(path)
    if not parent.is_dir():
        raise ConfigError(f"{flag} {path}: {parent} is not a directory")
    return parent


def check_output_file(path: str | Path, flag: str, *, make_parents: bool = False) -> Path:
    """Check that ``path`` can be written as a file, before any work starts.

    Args:
        path: the output file.
        flag: the flag that named it (``--report``), for the message.
        make_parents: missing parent directories will be created (then the nearest existing one must be a
            writable directory); otherwise the parent must exist.

    Returns:
        ``path`` as a Path.

    Raises:
        ConfigError: ``path`` is a directory, its parent is missing or is not a directory, or nothing can be
            created there (a read-only place).
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {p}: is a directory; give a file path")
    if p.exists() and not stat.S_ISREG(p.stat().st_mode):  # a device (/dev/null): written in place
        if not os.access(p, os.W_OK):
            raise ConfigError(f"{flag} {p}: is not writable")
        return p
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"{flag} {p}: is not writable")
    target = p.resolve() if p.is_symlink() else p
    _probe(_parent_dir(target, flag, make_parents=make_parents), flag, p)
    return p


def check_output_dir(path: str | Path, flag: str) -> Path:
    """Check that ``path`` is (or can be created as) a writable directory, before any work starts.

    Raises:
        ConfigError: ``path`` is a file, an ancestor is a file, or nothing can be created there.
    """
    p = Path(path)
    if os.path.lexists(p) and not p.is_dir():
        raise ConfigError(f"{flag} {p}: is a file, not a directory")
    folder = p if p.is_dir() else _parent_dir(p, flag, make_parents=True)
    _probe(folder, flag, p)
    return p


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` says the disk (or the quota) is full: ENOSPC, EDQUOT, or SQLite's SQLITE_FULL."""
    if isinstance(err, OSError):
        return err.errno in _FULL
    if isinstance(err, sqlite3.Error):
        return getattr(err, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(err)
    return False


def mentions_disk_full(text: str | None, where: str | Path | None = None) -> bool:
    """Whether an error message from another program (git, a tool, a subprocess) says the disk is full; with
    ``where``, also a failed write that does not say why (git's "unable to write file") while the filesystem
    of ``where`` is all but full (:func:`disk_almost_full`)."""
    low = (text or "").lower()
    if any(words in low for words in _FULL_WORDS):
        return True
    return where is not None and any(words in low for words in _WRITE_WORDS) and disk_almost_full(where)


def output_error(err: OSError | sqlite3.Error, path: str | Path | None, *, rerun: str = RERUN) -> OutputError:
    """The OutputError of a failed write of ``path`` (a full disk gets its own message)."""
    where = str(path) if path is not None else "an output file"
    if is_disk_full(err):
        return OutputError(f"no space left on device writing {where}: {rerun}")
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return OutputError(f"cannot write {where}: {reason}")


def _free_bytes(path: Path) -> int:
    probe = path if path.exists() else _existing_ancestor(path)
    try:
        st = os.statvfs(probe)
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


def disk_almost_full(path: str | Path, margin: int = 1 << 20) -> bool:
    """Whether the filesystem of ``path`` has less than ``margin`` bytes free (for errors of other programs
    that do not say why a write failed, e.g. git's "unable to write file")."""
    return _free_bytes(Path(path)) < margin


def disk_full_error(
    err: BaseException, outputs: Iterable[str | Path | None], *, rerun: str = RERUN
) -> OutputError | None:
    """An OutputError for a disk-full ``err`` raised somewhere in a run, else None.

    The message names the file the error names, or else (a buffered write, SQLite) the one of ``outputs``
    on the filesystem with the least free space.
    """
    if not isinstance(err, OSError | sqlite3.Error) or not is_disk_full(err):
        return None
    candidates = [Path(p) for p in outputs if p is not None]
    filename = err.filename if isinstance(err, OSError) else None
    named: Path | str | None = filename
    if filename is not None:  # a temp file or a file inside a run directory: name the output it belongs to
        f = Path(filename)
        named = next((c for c in candidates if c == f), None) or next(
            (c for c in candidates if c in f.parents or c.parent == f.parent), filename
        )
    elif candidates:
        named = min(candidates, key=_free_bytes)
    return output_error(err, named, rerun=rerun)


@contextlib.contextmanager
def guard_outputs(*outputs: str | Path | None, rerun: str = RERUN) -> Iterator[None]:
    """Turn a disk-full error inside the block into an OutputError naming the output that filled the disk
    (an OutputError raised inside gets ``rerun`` as its advice, too)."""
    try:
        yield
    except OutputError as err:
        text = str(err)
        if rerun == RERUN or not text.endswith(": " + RERUN):
            raise
        raise OutputError(text[: -len(RERUN)] + rerun) from err
    except (OSError, sqlite3.Error) as err:
        full = disk_full_error(err, outputs, rerun=rerun)
        if full is None:
            raise
        raise full from err


@contextlib.contextmanager
def writing(path: str | Path, *, rerun: str = RERUN) -> Iterator[None]:
    """Turn any OSError inside the block (a write of ``path``) into an OutputError naming ``path``."""
    try:
        yield
    except OSError as err:
        raise output_error(err, path, rerun=rerun) from err


def write_atomic(path: str | Path, data: str | bytes, *, rerun: str = RERUN) -> None:
    """Write ``data`` to ``path`` atomically: the old file stays until the new one is complete on disk.

    A temporary file in the same directory is written, fsynced and renamed over ``path`` (a symlink is
    written through; a device such as /dev/null is written in place). On failure the temporary file is
    removed and ``path`` is as it was.

    Raises:
        OutputError: the write failed (the message names ``path``; a full disk says so).
    """
    p = Path(path)
    target = p.resolve() if p.is_symlink() else p
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with writing(p, rerun=rerun):
        if target.exists() and not stat.S_ISREG(target.stat().st_mode):
            with open(target, "wb") as f:
                f.write(raw)
            return
        tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
            if target.exists():
                with contextlib.suppress(OSError):
                    os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    with contextlib.suppress(OSError):  # the rename itself durable: best effort (not every filesystem can)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
