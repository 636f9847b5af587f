"""Load GAIA questions from the official layout: ``<data>/2023/<split>/metadata.jsonl`` (or ``metadata.parquet``).

Each record has ``task_id``, ``Question``, ``Level`` (1-3), ``Final answer`` (``?`` where it is hidden, as in
the test split), ``file_name`` (empty = no attachment; else the attachment is ``2023/<split>/<file_name>``) and
``Annotator Metadata``. Other fields (``file_path``, ...) are ignored. mdap never downloads the dataset: point
the loader at your copy, or at :data:`MINI_DATA`, the small offline suite shipped with mdap.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mdap.errors import ConfigError
from mdap.jsontext import loads_json

__all__ = ["HIDDEN_ANSWER", "MINI_DATA", "PARQUET_HINT", "GaiaQuestion", "find_split", "load_gaia"]

MINI_DATA = Path(__file__).resolve().parent.parent / "data" / "gaia_mini"
"""The offline mini suite shipped with mdap (split ``validation``), in the official layout."""

HIDDEN_ANSWER = "?"
"""The ``Final answer`` of questions whose answer is not public (the test split): they are not scored."""

PARQUET_HINT = "pip install 'mdap[gaia]' (or pip install pyarrow)"

_METADATA = ("metadata.jsonl", "metadata.parquet")
_REQUIRED = ("task_id", "Question", "Level", "Final answer")


class GaiaQuestion(BaseModel):
    """One GAIA question, validated.

    Attributes:
        attachment: the absolute path of the attached file, or None.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: str = Field(min_length=1, description="the question's id (the leaderboard's key)")
    question: str = Field(min_length=1, description="the question text (``Question``)")
    level: int = Field(ge=1, le=3, description="difficulty level 1-3 (``Level``)")
    final_answer: str = Field(description="the ground truth (``Final answer``); '?' when hidden")
    file_name: str = Field("", description="the attachment's name in the split folder; '' = none")
    attachment: Path | None = None
    annotator_metadata: dict[str, Any] = Field(default_factory=dict, description="``Annotator Metadata``")

    @property
    def scored(self) -> bool:
        """Whether the ground truth is known (not ``?``), so an answer can be scored."""
        return self.final_answer.strip() != HIDDEN_ANSWER


def find_split(data: str | Path, split: str) -> Path:
    """The folder holding ``split``'s metadata: ``data/2023/<split>``, ``data/<split>`` or ``data`` itself.

    Raises:
        ConfigError: none of them has a metadata.jsonl or metadata.parquet.
    """
    root = Path(data)
    if not root.is_dir():
        raise ConfigError(f"GAIA data folder {root} does not exist; point --data at the folder that holds 2023/")
    candidates = [root / "2023" / split, root / split, root]
    for folder in candidates:
        if any((folder / name).is_file() for name in _METADATA):
            return folder
    raise ConfigError(
        f"no GAIA metadata for split {split!r} under {root}: expected {root / '2023' / split / 'metadata.jsonl'} "
        "(or metadata.parquet), the official layout"
    )


def load_gaia(
    data: str | Path,
    split: str = "validation",
    *,
    levels: Iterable[int] | None = None,
    ids: Iterable[str] | None = None,
) -> list[GaiaQuestion]:
    """The questions of ``split`` in file order, optionally only some levels and ids.

    Args:
        data: the dataset folder (the one holding ``2023/``), or the split folder itself.
        split: ``validation`` or ``test`` (any folder name under ``2023/``).
        levels: keep only these levels (1-3); None = all.
        ids: keep only these task ids; None = all.

    Raises:
        ConfigError: no metadata or none in it, a malformed record (the message names the file, the line or row, and the
            field), a duplicate task id, a missing attachment, an unknown level or id in the filters, or a
            parquet file without pyarrow installed.
    """
    folder = find_split(data, split)
    jsonl = folder / "metadata.jsonl"
    records = _jsonl(jsonl) if jsonl.is_file() else _parquet(folder / "metadata.parquet")
    questions: list[GaiaQuestion] = []
    seen: dict[str, str] = {}
    for where, record in records:
        q = _question(record, where, folder)
        if q.task_id in seen:
            raise ConfigError(
                f"{where}: task_id {q.task_id!r} was already used at {seen[q.task_id]}; ids must be unique"
            )
        seen[q.task_id] = where
        questions.append(q)
    if not questions:
        source = jsonl if jsonl.is_file() else folder / "metadata.parquet"
        raise ConfigError(f"{source} holds no questions; point --data at a GAIA folder with its metadata")
    if levels is not None:
        wanted = set(levels)
        bad = sorted(wanted - {1, 2, 3})
        if bad:
            raise ConfigError(f"unknown GAIA levels {bad}: levels are 1, 2 and 3")
        questions = [q for q in questions if q.level in wanted]
    if ids is not None:
        keep = list(dict.fromkeys(ids))
        missing = [i for i in keep if i not in seen]
        if missing:
            raise ConfigError(f"task ids not in {folder}: {', '.join(missing)}")
        wanted_ids = set(keep)
        questions = [q for q in questions if q.task_id in wanted_ids]
    return questions


def _jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            where = f"{path} line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ConfigError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
            if not line.strip():
                continue
            try:
                record = loads_json(line)
            except ValueError as err:
                raise ConfigError(f"{where}: not valid JSON ({err}); each line must be one JSON object") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{where}: each line must be a JSON object, got {type(record).__name__}")
            yield where, record


def _parquet(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(f"reading {path} needs pyarrow: {PARQUET_HINT}; or convert it to metadata.jsonl") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several unrelated types for a damaged file; all mean the same here
        raise ConfigError(f"{path}: not a readable parquet file ({err})") from None
    for number, row in enumerate(rows, 1):
        yield f"{path} row {number}", row


def _text(record: Mapping[str, Any], field: str, where: str, *, empty_ok: bool = False) -> str:
    value = record.get(field)
    if value is None and empty_ok:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{where}, field {field!r}: must be a string, got {type(value).__name__}")
    text = str(value)
    if not text.strip() and not empty_ok:
        raise ConfigError(f"{where}, field {field!r}: is empty")
    return text


def _level(value: Any, where: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value not in (1, 2, 3):
        raise ConfigError(f"{where}, field 'Level': must be 1, 2 or 3, got {value!r}")
    return value


def _question(record: Mapping[str, Any], where: str, folder: Path) -> GaiaQuestion:
    missing = [f for f in _REQUIRED if f not in record]
    if missing:
        raise ConfigError(f"{where}, field {missing[0]!r}: missing (a GAIA record needs {', '.join(_REQUIRED)})")
    meta = record.get("Annotator Metadata")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ConfigError(f"{where}, field 'Annotator Metadata': must be an object, got {type(meta).__name__}")
    file_name = _text(record, "file_name", where, empty_ok=True).strip()
    task_id = _text(record, "task_id", where).strip()
    return GaiaQuestion(
        task_id=task_id,
        question=_text(record, "Question", where),
        level=_level(record["Level"], where),
        final_answer=_text(record, "Final answer", where),
        file_name=file_name,
        attachment=_attachment(file_name, task_id, where, folder) if file_name else None,
        annotator_metadata=meta,
    )


def _attachment(file_name: str, task_id: str, where: str, folder: Path) -> Path:
    """The attachment ``folder/file_name``: a file inside ``folder``, also once symlinks are resolved (so the
    metadata cannot make a worker read a file elsewhere).

    Raises:
        ConfigError: an absolute name or one with ``..``, a missing file, or one that leads out of ``folder``.
    """
    where, task = f"{where}, field 'file_name'", f"(task {task_id!r})"
    parts = PurePosixPath(file_name.replace("\\", "/"))
    if parts.is_absolute() or ".." in parts.parts:
        raise ConfigError(f"{where}: {file_name!r} must be a file name inside {folder} {task}")
    path = folder / parts
    if not path.is_file():
        raise ConfigError(f"{where}: the attachment {path} does not exist {task}")
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ConfigError(
            f"{where}: the attachment {path} leads outside the dataset folder {folder} (through a symlink) {task}; "
            "put the file itself in the folder"
        )
    return path
