"""The on-disk score cache: each (coalition, seed) is scored once; an interrupted attribution resumes from it.

One JSON line per scored unit, appended and flushed as soon as the unit is scored, after a header line that
names the game's fingerprint. A line cut short by a crash is dropped on load.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from mdap._outputs import writing
from mdap.errors import CheckpointError
from mdap.jsontext import loads_json

__all__ = ["CACHE_FILE", "RERUN_ATTRIBUTION", "ScoreCache", "UnitKey"]

CACHE_FILE = "scores.jsonl"
RERUN_ATTRIBUTION = "free space and run the same command again (the score cache resumes it)"
_VERSION = 1

UnitKey = tuple[frozenset[str], int]
"""A scored unit: the coalition (slots using their test variant) and the seed."""


class ScoreCache:
    """Scores by (coalition, seed), in memory and - when ``path`` is given - in a JSONL file.

    Args:
        path: the cache file; None keeps scores in memory only.
        fingerprint: the game's identity; a file written for another game is refused.

    Raises:
        CheckpointError: the file belongs to another game or is not a score cache.
    """

    def __init__(self, path: Path | None, fingerprint: str) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.scores: dict[UnitKey, float] = {}
        self.items: dict[UnitKey, list[float]] = {}
        self._lock: IO[bytes] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _lock(path)
        try:
            if path is not None and path.exists() and path.stat().st_size:
                self._load(path)
            elif path is not None:
                self._append({"mdap_score_cache": _VERSION, "fingerprint": fingerprint})
        except BaseException:  # not ours, or a full disk: let go of the file
            self.close()
            raise

    def _load(self, path: Path) -> None:
        raw = path.read_bytes()
        if not raw.endswith(b"\n"):  # the last write was cut short: drop the partial line
            raw = raw[: raw.rfind(b"\n") + 1]
            with path.open("r+b") as f:
                f.truncate(len(raw))
        lines = raw.decode().splitlines()
        try:
            header = loads_json(lines[0]) if lines else {}
        except ValueError:
            header = {}
        if not isinstance(header, dict) or header.get("mdap_score_cache") != _VERSION:
            raise CheckpointError(f"{path} is not an mdap score cache; delete it or choose another output directory")
        if header.get("fingerprint") != self.fingerprint:
            raise CheckpointError(
                f"the score cache {path} was written for another game (slots, variants or benchmark changed); "
                "delete it (or pass --fresh) to score every coalition again"
            )
        for n, line in enumerate(lines[1:], start=2):
            try:
                entry = loads_json(line)
                key = (frozenset(entry["coalition"]), int(entry["seed"]))
                self.scores[key] = float(entry["score"])
                self.items[key] = [float(x) for x in entry.get("items", [])]
            except (ValueError, KeyError, TypeError) as err:
                raise CheckpointError(f"{path}, line {n}: not a score entry ({err}); delete the file") from None

    def _append(self, entry: dict[str, Any]) -> None:
        if self.path is None:
            return
        with writing(self.path, rerun=RERUN_ATTRIBUTION), self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        """Release the cache for other processes."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def get(self, key: UnitKey) -> float | None:
        """The cached score of a unit, or None."""
        return self.scores.get(key)

    def missing(self, keys: Iterable[UnitKey]) -> list[UnitKey]:
        """The units of ``keys`` that have no score yet, in order."""
        return [k for k in keys if k not in self.scores]

    def add(self, key: UnitKey, score: float, items: list[float]) -> None:
        """Record a unit's score (and its per-item scores), on disk first."""
        coalition, seed = key
        self._append({"coalition": sorted(coalition), "seed": seed, "score": score, "items": items})
        self.scores[key] = score
        self.items[key] = items


def _lock(path: Path) -> IO[bytes]:
    """Hold an exclusive (advisory) lock on the cache file, so two attributions never append to one cache."""
    handle = path.open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise CheckpointError(
            f"another attribution is using the score cache {path}; wait for it or choose another output directory"
        ) from None
    return handle
