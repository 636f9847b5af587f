"""File access inside a workspace that follows no symlink and touches no hardlinked file.

Every path is split into components (lexically normalized; ``..`` may not climb above the root) and walked
from the root one directory at a time with ``openat``-style calls (``dir_fd``) and ``O_NOFOLLOW``, so a
symlink anywhere in the path is refused, also one planted between a check and the use (no TOCTOU window:
what is checked is the open file descriptor, not a path). A file is read or written only when it is a
regular file with one link (``fstat(fd).st_nlink == 1``): a hardlink to a file outside the workspace is
refused rather than read or written through.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Generator, Iterator
from pathlib import Path, PurePosixPath

from mdap.errors import ToolError

__all__ = [
    "list_dir",
    "open_dir",
    "open_file",
    "read_at",
    "read_text",
    "split",
    "symlink_refused",
    "walk_files",
    "write_text",
]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_FILE = os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC  # O_NONBLOCK: opening a FIFO must not hang the worker


def symlink_refused(shown: str) -> ToolError:
    return ToolError(
        f"refused: {shown!r} is a symlink; the file tools follow no symlink (it could lead outside the workspace)"
    )


def split(root: Path, relative: str) -> tuple[str, ...]:
    """The components of ``relative`` below ``root`` (``()`` = the root itself), lexically normalized.

    Raises:
        ToolError: empty, a NUL byte, or outside the root (``..`` above it, or an absolute path elsewhere).
    """
    if not relative or "\x00" in relative:
        raise ToolError("the path is empty or contains a NUL byte")
    norm = posixpath.normpath(relative)
    if norm.startswith("/"):
        inner = PurePosixPath(norm)
        if not inner.is_relative_to(root):
            raise ToolError(f"refused: {relative!r} is outside the workspace; use a path relative to it")
        norm = str(inner.relative_to(root))
    if norm == ".." or norm.startswith("../"):
        raise ToolError(f"refused: {relative!r} is outside the workspace; use a path relative to it")
    return tuple(p for p in norm.split("/") if p not in ("", "."))


def _why(dir_fd: int, name: str, shown: str, err: OSError) -> ToolError:
    """The ToolError for an ``open`` of ``name`` (in ``dir_fd``) that failed with ``err``."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return ToolError(f"cannot open {shown!r}: {err.strerror or err}")
    if stat.S_ISLNK(st.st_mode):
        return symlink_refused(shown)
    if isinstance(err, NotADirectoryError):
        return ToolError(f"{shown!r} is not a directory")
    if not stat.S_ISDIR(st.st_mode) and not stat.S_ISREG(st.st_mode):
        return ToolError(f"refused: {shown!r} is not a regular file or directory")
    return ToolError(f"cannot open {shown!r}: {err.strerror or err}")


def open_dir(root: Path, parts: tuple[str, ...], *, create: bool = False) -> int:
    """An fd of the directory ``root/parts`` reached without following a symlink (the caller closes it).

    Args:
        create: make missing directories on the way (``mkdir`` in the parent's fd).

    Raises:
        ToolError: a component is a symlink or not a directory, or missing (without ``create``).
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    try:
        for i, name in enumerate(parts):
            shown = "/".join(parts[: i + 1])
            try:
                child = os.open(name, _DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise ToolError(f"no directory {shown!r} in the workspace") from None
                try:
                    os.mkdir(name, 0o777, dir_fd=fd)
                    child = os.open(name, _DIR, dir_fd=fd)
                except OSError as err:
                    raise _why(fd, name, shown, err) from None
            except OSError as err:  # ELOOP or ENOTDIR: a symlink, or not a directory
                raise _why(fd, name, shown, err) from None
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_file(fd: int, shown: str) -> os.stat_result:
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        raise ToolError(f"{shown!r} is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise ToolError(f"refused: {shown!r} is not a regular file")
    if st.st_nlink > 1:
        raise ToolError(
            f"refused: {shown!r} is hardlinked ({st.st_nlink} names); the file tools neither read nor write a "
            "file with other names, which could be outside the workspace"
        )
    return st


def open_file(root: Path, parts: tuple[str, ...], *, write: bool) -> tuple[int, os.stat_result]:
    """An fd (and its stat) of the regular, singly linked file ``root/parts``, reached without a symlink.

    With ``write`` the file is opened for writing (created if missing, parent folders too) and is *not*
    truncated: the caller truncates after the checks passed.

    Raises:
        ToolError: a symlink on the way or at the end, a hardlinked or special file, a directory, a missing
            file (reading), or an OS error.
    """
    if not parts:
        raise ToolError("'.' is a directory")
    shown = "/".join(parts)
    dfd = open_dir(root, parts[:-1], create=write)
    try:
        name = parts[-1]
        flags = (os.O_WRONLY if write else os.O_RDONLY) | _FILE
        try:
            fd = os.open(name, flags, dir_fd=dfd)
        except FileNotFoundError:
            if not write:
                raise ToolError(f"no file {shown!r} in the workspace") from None
            try:  # O_EXCL: never through a symlink or a file that appeared meanwhile
                fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=dfd)
            except OSError as err:
                raise _why(dfd, name, shown, err) from None
        except IsADirectoryError:
            raise ToolError(f"{shown!r} is a directory") from None
        except OSError as err:
            raise _why(dfd, name, shown, err) from None
    finally:
        os.close(dfd)
    try:
        return fd, _check_file(fd, shown)
    except BaseException:
        os.close(fd)
        raise


def _read(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_text(root: Path, parts: tuple[str, ...], max_chars: int) -> str:
    """At most ``max_chars`` characters of the file (a note says what was cut); reads at most ~4 bytes a char."""
    try:
        fd, st = open_file(root, parts, write=False)
    except ToolError as err:
        if str(err).endswith("is a directory"):
            raise ToolError(f"no file {'/'.join(parts) or '.'!r} in the workspace (it is a directory)") from None
        raise
    try:
        data = _read(fd, max_chars * 4 + 4)
    except OSError as err:
        raise ToolError(f"cannot read {'/'.join(parts)!r}: {err.strerror or err}") from None
    finally:
        os.close(fd)
    text = data.decode("utf-8", errors="replace")
    if len(text) <= max_chars and len(data) >= st.st_size:
        return text
    return text[:max_chars] + f"\n...[cut: showed {max_chars} characters of a file of {st.st_size} bytes]"


def write_text(root: Path, parts: tuple[str, ...], content: str) -> None:
    """Replace the file's content (created with its folders if missing), through no symlink or hardlink."""
    fd, _ = open_file(root, parts, write=True)
    try:
        os.ftruncate(fd, 0)
        view = memoryview(content.encode("utf-8", errors="replace"))
        while view:
            view = view[os.write(fd, view) :]
    except OSError as err:
        raise ToolError(f"cannot write {'/'.join(parts)!r}: {err.strerror or err}") from None
    finally:
        os.close(fd)


def list_dir(root: Path, parts: tuple[str, ...], max_entries: int) -> tuple[list[str], bool]:
    """The entries of a directory (folders end in ``/``, symlinks in ``@``, not followed), sorted; and whether
    the listing stopped at ``max_entries``."""
    fd = open_dir(root, parts)
    try:
        names: list[str] = []
        prefix = "/".join(parts) + "/" if parts else ""
        with os.scandir(fd) as entries:
            for entry in entries:
                if len(names) >= max_entries:
                    return sorted(names), True
                mark = "@" if entry.is_symlink() else "/" if entry.is_dir(follow_symlinks=False) else ""
                names.append(prefix + entry.name + mark)
        return sorted(names), False
    finally:
        os.close(fd)


def walk_files(
    root: Path, *, max_entries: int, skip: frozenset[str] = frozenset()
) -> Generator[tuple[str, int, str], None, None]:
    """(relative path, directory fd, name) of every regular file below ``root``, depth first in name order.

    Symlinks are neither followed nor yielded; folders named in ``skip`` are not entered. The fd is valid
    until the next item. After ``max_entries`` directory entries the walk stops and yields ``("", -1, "")``
    as its last item, so the caller can say it stopped.
    """
    seen = 0

    def walk(fd: int, prefix: str) -> Iterator[tuple[str, int, str]]:
        nonlocal seen
        with os.scandir(fd) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            seen += 1
            if seen > max_entries:
                return
            if entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                if entry.name in skip:
                    continue
                try:
                    child = os.open(entry.name, _DIR, dir_fd=fd)
                except OSError:
                    continue  # gone, replaced by a symlink, or unreadable: not searched
                try:
                    yield from walk(child, prefix + entry.name + "/")
                finally:
                    os.close(child)
                if seen > max_entries:
                    return
            elif entry.is_file(follow_symlinks=False):
                yield prefix + entry.name, fd, entry.name

    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    try:
        yield from walk(top, "")
    finally:
        os.close(top)
    if seen > max_entries:
        yield "", -1, ""


def read_at(dir_fd: int, name: str, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of the regular, singly linked file ``name`` in ``dir_fd``; None when it is not one."""
    try:
        fd = os.open(name, os.O_RDONLY | _FILE, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            return None
        return _read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)
