"""SWE-bench instances: the record model and a loader for instance files (JSON, JSONL, parquet).

The fields are those of the SWE-bench datasets (``princeton-nlp/SWE-bench*`` and the 5.x ``SWE-bench/*``
datasets): ``FAIL_TO_PASS`` and ``PASS_TO_PASS`` are JSON strings holding lists of test ids (lists are taken
too). The 5.x fields ``image``, ``eval_script``, ``log_parser`` and ``eval_type`` are optional.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mdap.errors import ConfigError
from mdap.jsontext import loads_json

__all__ = ["SWEInstance", "check_instance_id", "check_name", "inside", "load_instances", "repo_path"]

_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_\-])?"
_INSTANCE_ID = re.compile(rf"^(?!.*\.\.){_PART}__{_PART}-[0-9]+$")
_NAME = re.compile(rf"^(?!.*\.\.){_PART}$")
_MAX_ID = 200  # the id names files (<id>.events.jsonl): well below the 255 bytes of a file name


def check_instance_id(value: str) -> str:
    """``value`` when it is an instance id of the official form ``owner__repo-number``.

    Letters, digits, ``.``, ``_`` and ``-`` only (no ``/``, no ``..``, not starting with ``.`` or ``-``), so
    that the id can name files and folders (``<id>.json``, ``work/<id>``) without leaving the folder.

    Raises:
        ValueError: it is not (pydantic turns it into a field error).
    """
    if len(value) > _MAX_ID or not _INSTANCE_ID.match(value):
        raise ValueError(
            f"instance_id {value!r} is not of the official form owner__repo-number (e.g. 'astropy__astropy-12907': "
            f"letters, digits, '.', '_', '-'; no '/', no '..', not starting with '.' or '-'; at most {_MAX_ID})"
        )
    return value


def check_name(value: str, what: str = "name") -> str:
    """``value`` when it can name one file or folder: letters, digits, ``.``, ``_``, ``-``; no ``/``, no ``..``,
    not starting with ``.`` or ``-``.

    Raises:
        ValueError: it cannot.
    """
    if len(value) > _MAX_ID or not _NAME.match(value):
        raise ValueError(
            f"{what} {value!r} must be letters, digits, '.', '_' or '-' (no '/', no '..', not starting with '.' "
            f"or '-', at most {_MAX_ID} characters)"
        )
    return value


def inside(root: str | Path, name: str) -> Path:
    """``root/name``, checked to stay inside ``root`` (lexically, and once symlinks are resolved).

    Every path built from an instance id or a repository name goes through this.

    Raises:
        ConfigError: ``name`` is empty, has a NUL, is absolute, or leads outside ``root``.
    """
    base = Path(root)
    norm = posixpath.normpath(name) if name else ""
    if (
        not name
        or "\x00" in name
        or norm.startswith("/")
        or norm in (".", "..")
        or norm.startswith("../")
        or ".." in Path(name).parts
    ):
        raise ConfigError(f"refused: the name {name!r} is empty or leads outside {base}")
    path = base / name
    if not path.resolve().is_relative_to(base.resolve()):
        raise ConfigError(f"refused: {path} leads outside {base} (through a symlink)")
    return path


class SWEInstance(BaseModel):
    """One SWE-bench task instance: an issue in a repository at a commit, with the tests that judge a fix."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    instance_id: str = Field(
        min_length=1, description="unique id of the form owner__repo-number, e.g. 'astropy__astropy-12907'"
    )
    repo: str = Field(
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*/[A-Za-z0-9_][A-Za-z0-9_.\-]*$",
        description="'owner/name' of the repository (neither part starting with '.' or '-')",
    )
    base_commit: str = Field(pattern=r"^[0-9a-fA-F]{7,40}$", description="the commit the issue is reported against")
    problem_statement: str = Field(min_length=1, description="the issue text")
    hints_text: str = Field(default="", description="comments on the issue before the fix")
    patch: str = Field(default="", description="the gold patch (source files only)")
    test_patch: str = Field(default="", description="the patch that adds or changes the tests")
    FAIL_TO_PASS: list[str] = Field(description="tests the fix must make pass")
    PASS_TO_PASS: list[str] = Field(default_factory=list, description="tests that must keep passing")
    version: str = Field(default="", description="the repository's version (selects the environment)")
    environment_setup_commit: str = Field(default="", description="commit the environment is installed from")
    created_at: str = ""
    image: str | None = Field(default=None, description="5.x: the evaluation image")
    eval_script: str | None = Field(default=None, description="5.x: the script that runs the tests")
    log_parser: str | None = Field(default=None, description="5.x: the name of the test log parser")
    eval_type: str | None = Field(default=None, description="5.x: 'pass_and_fail' or 'fail_only'")

    @field_validator("instance_id")
    @classmethod
    def _instance_id(cls, value: str) -> str:
        return check_instance_id(value)

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", mode="before")
    @classmethod
    def _tests(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = loads_json(value) if value.strip() else []
            except ValueError as err:
                raise ValueError(f"must be a JSON list of test ids, got a string that is not JSON ({err})") from None
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise ValueError("must be a list of test ids (strings), or a JSON string of one")
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @property
    def name(self) -> str:
        """The repository's name (the part after '/'): its folder in the repos directory."""
        return self.repo.split("/", 1)[1]

    def record(self) -> dict[str, Any]:
        """The instance in the SWE-bench file format (test lists as JSON strings)."""
        data = self.model_dump(exclude_none=True)
        data["FAIL_TO_PASS"] = json.dumps(self.FAIL_TO_PASS)
        data["PASS_TO_PASS"] = json.dumps(self.PASS_TO_PASS)
        return data


def repo_path(repos: str | Path, instance: SWEInstance) -> Path:
    """The local git repository of ``instance``: ``repos/<name>`` for repo ``owner/name``.

    Raises:
        ConfigError: no git repository there.
    """
    path = inside(repos, instance.name)
    if not path.is_dir() or not ((path / ".git").exists() or (path / "HEAD").is_file()):
        raise ConfigError(
            f"instance {instance.instance_id}: no git repository at {path} for repo {instance.repo}; "
            f"put a clone of {instance.repo} (or a bare repo) at {path}"
        )
    return path


def _records(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, record) pairs of an instance file; ``where`` names the line or index for error messages."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet(path)
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read instance file {path}: {err}") from None
    stripped = text.lstrip()
    if suffix == ".jsonl" or (suffix != ".json" and not stripped.startswith("[")):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield f"line {number}", loads_json(line)
            except ValueError as err:
                raise ConfigError(f"{path}: line {number} is not valid JSON: {err}") from None
        return
    try:
        data = loads_json(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON (line {err.lineno}): {err}") from None
    if isinstance(data, dict) and "instance_id" in data:
        data = [data]
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON list of instances (or JSON lines), got {type(data).__name__}")
    for index, record in enumerate(data):
        yield f"item {index}", record


def _parquet(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            f"{path}: reading parquet needs pyarrow: pip install 'mdap[swebench]' (or convert the file to JSONL)"
        ) from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises its own error types for a damaged file
        raise ConfigError(f"{path}: cannot read the parquet file: {err}") from None
    for index, record in enumerate(rows):
        yield f"row {index}", record


def load_instances(path: str | Path, *, ids: Iterable[str] | None = None) -> list[SWEInstance]:
    """Read the SWE-bench instances of ``path`` (``.json`` list, ``.jsonl``, or ``.parquet`` with pyarrow).

    Args:
        path: the instance file.
        ids: keep only these instance ids (all must exist); None keeps every instance.

    Raises:
        ConfigError: the file is missing or malformed; the message names the file, the line (or item) and
            instance, and the field that is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"instance file {path} does not exist")
    out: list[SWEInstance] = []
    seen: set[str] = set()
    for where, record in _records(path):
        if not isinstance(record, dict):
            raise ConfigError(f"{path}: {where} must be a JSON object (an instance), got {type(record).__name__}")
        label = f"{where} (instance {record.get('instance_id')!r})" if record.get("instance_id") else where
        try:
            inst = SWEInstance.model_validate(record)
        except ValidationError as err:
            problems = "; ".join(
                f"field {'.'.join(str(p) for p in e['loc']) or '?'}: {e['msg']}" for e in err.errors()[:5]
            )
            raise ConfigError(f"{path}: {label}: {problems}") from None
        if inst.instance_id in seen:
            raise ConfigError(f"{path}: {label}: duplicate instance_id {inst.instance_id!r}")
        seen.add(inst.instance_id)
        out.append(inst)
    if not out:
        raise ConfigError(f"{path}: no instances in the file")
    if ids is not None:
        wanted = list(dict.fromkeys(ids))
        missing = [i for i in wanted if i not in seen]
        if missing:
            raise ConfigError(f"{path}: no instance with id {', '.join(missing[:5])}")
        keep = set(wanted)
        out = [i for i in out if i.instance_id in keep]
    return out
