"""Argument types the subcommands share: every number and input path is checked as argparse parses it, so bad
input ends in argparse's ``error:`` line and exit 2, before any work starts or any server binds.

Numbers: finite (no ``nan``/``inf``), in range. Input paths: exist, are what the flag takes (a regular file or a
directory), can be read, and - for text inputs - are UTF-8 text (no NUL bytes). Each type carries what it takes
(``numeric`` or ``path_kind``) so that tests can walk the parser and feed every flag bad values.
"""

from __future__ import annotations

import argparse
import codecs
import math
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

__all__ = [
    "ArgType",
    "checkpoint_file",
    "finite_float",
    "http_url",
    "id_list",
    "input_dir",
    "input_file",
    "int_range",
    "k_or_auto",
    "nonneg_float",
    "nonneg_int",
    "pipeline_target",
    "port",
    "positive_float",
    "positive_int",
    "probability",
    "read_text_input",
]

T = TypeVar("T")

_CHUNK = 1 << 16
_SQLITE_MAGIC = b"SQLite format 3\x00"


class ArgType(Generic[T]):
    """An argparse ``type=``: a parse function that raises :class:`argparse.ArgumentTypeError` with the problem.

    Attributes:
        numeric: the flag takes a number.
        path_kind: the flag takes a path: ``input_file`` or ``input_dir`` (None otherwise).
    """

    def __init__(self, parse: Callable[[str], T], name: str, *, numeric: bool = False, path_kind: str | None = None):
        self._parse = parse
        self.__name__ = name  # argparse names the type in its messages
        self.numeric = numeric
        self.path_kind = path_kind

    def __call__(self, value: str) -> T:
        return self._parse(value)

    def __repr__(self) -> str:
        return self.__name__


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def finite_float(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> ArgType[float]:
    """A finite float (not nan, not inf) in [low, high]; ``low_open``/``high_open`` exclude the bound."""
    what = "a finite number" + (
        f" {_bounds(low, high, low_open, high_open)}" if low is not None or high is not None else ""
    )

    def parse(value: str) -> float:
        try:
            x = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
        ok = math.isfinite(x)
        if ok and low is not None:
            ok = x > low if low_open else x >= low
        if ok and high is not None:
            ok = x < high if high_open else x <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
        return x

    return ArgType(parse, "number", numeric=True)


def int_range(low: int | None = None, high: int | None = None) -> ArgType[int]:
    """An integer in [low, high] (a bound of None is open-ended)."""
    what = "an integer" + (f" {_bounds(low, high, False, False)}" if low is not None or high is not None else "")

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
        if (low is not None and n < low) or (high is not None and n > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {n}")
        return n

    return ArgType(parse, "integer", numeric=True)


positive_int = int_range(1)
"""An integer >= 1 (counts, sizes, limits)."""
nonneg_int = int_range(0)
"""An integer >= 0 (seeds, optional counts)."""
port = int_range(1, 65535)
"""A TCP port, 1..65535."""
positive_float = finite_float(0.0, low_open=True)
"""A finite number > 0 (timeouts, intervals)."""
nonneg_float = finite_float(0.0)
"""A finite number >= 0 (latencies, temperatures, weights)."""
probability = finite_float(0.0, 1.0)
"""A rate or share in [0, 1]."""


def _k_or_auto(value: str) -> int | str:
    return value if value == "auto" else positive_int(value)


k_or_auto: ArgType[int | str] = ArgType(_k_or_auto, "k", numeric=True)
"""A vote margin: an integer >= 1, or ``auto`` (calibrated)."""


def id_list(what: str) -> Callable[[str], list[str]]:
    """An argparse type for comma-separated ids; ``what`` names them in the error ("task ids")."""

    def parse(value: str) -> list[str]:
        ids = [part.strip() for part in value.split(",") if part.strip()]
        if not ids:
            raise argparse.ArgumentTypeError(f"give one or more {what}, separated by commas")
        return ids

    return parse


def read_text_input(path: Path, *, text: bool = True) -> None:
    """Check that ``path`` is a readable regular file and, with ``text``, UTF-8 text without NUL bytes.

    Raises:
        argparse.ArgumentTypeError: what is wrong, with the path.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        missing = next((p for p in reversed(path.parents) if not os.path.lexists(p)), None)
        where = f" (directory {missing} does not exist)" if missing is not None and str(missing) != "." else ""
        raise argparse.ArgumentTypeError(f"{path}: no such file{where}") from None
    except OSError as err:
        raise argparse.ArgumentTypeError(f"{path}: cannot read it ({err.strerror or err})") from None
    if stat.S_ISDIR(st.st_mode):
        raise argparse.ArgumentTypeError(f"{path}: is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise argparse.ArgumentTypeError(f"{path}: is not a regular file")
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                if not text:
                    return  # readable: the reader of a binary format checks the rest
                if b"\x00" in chunk:
                    raise argparse.ArgumentTypeError(f"{path}: is a binary file (a NUL byte), not text")
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as err:
                    raise argparse.ArgumentTypeError(
                        f"{path}: is not UTF-8 text (byte {offset + err.start}: {err.reason})"
                    ) from None
                offset += len(chunk)
            if text:
                decoder.decode(b"", final=True)
    except UnicodeDecodeError as err:
        raise argparse.ArgumentTypeError(
            f"{path}: is not UTF-8 text (it ends inside a character: {err.reason})"
        ) from None
    except OSError as err:
        raise argparse.ArgumentTypeError(f"{path}: cannot read it ({err.strerror or err})") from None


def input_file(*, text: bool = True, binary_suffixes: tuple[str, ...] = ()) -> ArgType[Path]:
    """An existing, readable regular file; UTF-8 text unless ``text`` is False or its suffix is one of
    ``binary_suffixes`` (``.parquet``)."""

    def parse(value: str) -> Path:
        path = Path(value).expanduser()
        read_text_input(path, text=text and path.suffix.lower() not in binary_suffixes)
        return path

    return ArgType(parse, "file", path_kind="input_file")


def _check_dir(path: Path) -> None:
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{path}: no such directory")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is not a directory")
    try:
        with os.scandir(path) as entries:
            next(entries, None)
    except OSError as err:
        raise argparse.ArgumentTypeError(f"{path}: cannot list it ({err.strerror or err})") from None


def input_dir(*, keep: tuple[str, ...] = (), holding: str | None = None) -> ArgType[Path | str]:
    """An existing, listable directory; ``keep`` values (like ``mini``) pass as given; ``holding`` names a file
    the directory must hold (``adapter_config.json``)."""

    def parse(value: str) -> Path | str:
        if value in keep and not Path(value).exists():
            return value
        path = Path(value).expanduser()
        _check_dir(path)
        if holding is not None and not (path / holding).is_file():
            raise argparse.ArgumentTypeError(f"{path}: has no {holding}")
        return path

    return ArgType(parse, "directory", path_kind="input_dir")


def _checkpoint(value: str) -> Path:
    path = Path(value).expanduser()
    if not os.path.lexists(path):
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            what = "is not a directory" if os.path.lexists(parent) else "does not exist"
            raise argparse.ArgumentTypeError(f"{path}: directory {parent} {what}")
        return path
    read_text_input(path, text=False)
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as err:
        raise argparse.ArgumentTypeError(f"{path}: cannot read it ({err.strerror or err})") from None
    if head and head != _SQLITE_MAGIC:
        raise argparse.ArgumentTypeError(f"{path}: is not an SQLite checkpoint (delete it, or give another file)")
    return path


checkpoint_file: ArgType[Path] = ArgType(_checkpoint, "checkpoint", path_kind="input_file")
"""An SQLite checkpoint file: a new file in an existing directory, or an SQLite database (anything else is
refused: a garbage checkpoint is neither read as one nor overwritten)."""

_FACTORY = re.compile(r"^(?P<file>.+\.py):(?P<name>[A-Za-z_]\w*)$")


def _pipeline_target(value: str) -> str:
    factory = _FACTORY.match(value)
    read_text_input(Path(factory["file"] if factory else value).expanduser())
    return value


pipeline_target: ArgType[str] = ArgType(_pipeline_target, "pipeline", path_kind="input_file")
"""A roles file (.json/.toml/.yaml) or ``path/to/pipeline.py:factory``: the file exists and is UTF-8 text."""


def _http_url(value: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r} is not a URL ({err})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{value!r} is not an http(s) URL (like http://127.0.0.1:4318)")
    return value


http_url: ArgType[str] = ArgType(_http_url, "URL")
"""An ``http://`` or ``https://`` URL with a host (and a valid port, if any)."""
