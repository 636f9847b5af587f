"""Predictions in the format SWE-bench's harness takes: ``instance_id``, ``model_name_or_path``, ``model_patch``."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mdap._outputs import writing
from mdap.errors import ConfigError
from mdap.jsontext import loads_json

from .instances import check_name

__all__ = ["Prediction", "append_prediction", "load_predictions"]


class Prediction(BaseModel):
    """One prediction: the patch a system proposes for an instance."""

    model_config = ConfigDict(extra="allow")

    instance_id: str = Field(min_length=1)
    model_name_or_path: str = "unknown"
    model_patch: str | None = Field(default="", description="a unified diff; empty or null = no change")

    @field_validator("instance_id")
    @classmethod
    def _instance_id(cls, value: str) -> str:
        # any tool's predictions are read, so the official form is not required here (an id must match an
        # instance of the instance file, which is checked for it); it must only be unable to name a path
        return check_name(value, "instance_id")


def load_predictions(path: str | Path, *, unique: bool = False) -> dict[str, Prediction]:
    """Read predictions from JSONL (one per line), a JSON list, or a JSON object keyed by instance id.

    Args:
        path: the predictions file.
        unique: an instance predicted twice is an error (predictions to grade: which one counts is not ours
            to guess); otherwise the last prediction of an instance wins (a run's own file, appended to).

    Raises:
        ConfigError: a missing file, a line that is not JSON, or a prediction without ``instance_id``; the
            message names the file, the line and the field. With ``unique``, the instances predicted more
            than once, with where.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"predictions file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    records: list[tuple[str, object]] = []
    stripped = text.lstrip()
    if path.suffix == ".json" or stripped.startswith("["):
        try:
            data = loads_json(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON (line {err.lineno}): {err}") from None
        items = (
            list(data.items()) if isinstance(data, dict) else list(enumerate(data)) if isinstance(data, list) else None
        )
        if items is None:
            raise ConfigError(f"{path}: expected a list of predictions or an object keyed by instance id")
        if isinstance(data, dict):  # keyed by instance id: the key is the id when the record has none
            items = [(k, {"instance_id": k, **v} if isinstance(v, dict) else v) for k, v in items]
        records = [(f"item {k}", v) for k, v in items]
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((f"line {number}", loads_json(line)))
                except json.JSONDecodeError as err:
                    raise ConfigError(f"{path}: line {number} is not valid JSON: {err}") from None
    out: dict[str, Prediction] = {}
    seen: dict[str, list[str]] = {}
    for where, record in records:
        try:
            pred = Prediction.model_validate(record)
        except ValidationError as err:
            e = err.errors()[0]
            field = ".".join(str(p) for p in e["loc"]) or "?"
            raise ConfigError(f"{path}: {where}: field {field}: {e['msg']}") from None
        out[pred.instance_id] = pred
        seen.setdefault(pred.instance_id, []).append(where)
    twice = {iid: places for iid, places in seen.items() if len(places) > 1}
    if unique and twice:
        shown = "; ".join(f"{iid} ({', '.join(places)})" for iid, places in list(twice.items())[:5])
        more = f" (+{len(twice) - 5} more)" if len(twice) > 5 else ""
        raise ConfigError(
            f"{path}: {len(twice)} instance(s) predicted more than once: {shown}{more}; keep one prediction each"
        )
    return out


def append_prediction(path: Path, prediction: Prediction) -> None:
    """Append one prediction to a JSONL file (flushed, so a killed run keeps it).

    Raises:
        OutputError: it could not be written (a full disk).
    """
    with writing(path), path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(prediction.model_dump(), ensure_ascii=False) + "\n")
