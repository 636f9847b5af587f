"""Candidate fixes: the fixer's answer format, turning it into a git patch, and normalizing patches for votes.

A fixer answers with search/replace edits (what small models write most reliably)::

    {"edits": [{"file": "pkg/mod.py", "search": "exact old lines", "replace": "new lines"}]}

or with a unified diff (``{"diff": "..."}`` or the diff as plain text). An empty ``search`` creates the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mdap.errors import RedFlag, ToolError
from mdap.jsontext import loads_json

from ._proc import GitError, diff_all, git_apply

__all__ = ["PatchError", "apply_fix", "normalize_patch", "parse_fix"]

_HEADER = re.compile(r"^diff --git a/(\S+) b/(\S+)$")


class PatchError(ToolError, ValueError):
    """A candidate fix cannot be applied (the message says why, for the trajectory).

    A :class:`~mdap.errors.ToolError` (so an :class:`~mdap.errors.MdapError`) and, as before, a ValueError.
    """


def _is_diff(text: str) -> bool:
    body = text.lstrip()
    return body.startswith(("diff --git ", "--- ")) and "\n@@" in body


def parse_fix(text: str) -> str:
    """The fixer role's answer parser: the canonical JSON of a fix, or RedFlag for anything else.

    Equal fixes (same edits, or the same diff) give equal canonical answers, so they count as one vote.
    """
    body = text.strip()
    if _is_diff(body):
        return json.dumps({"diff": body.strip("\n") + "\n"})
    try:
        data: Any = loads_json(body)
    except ValueError:
        raise RedFlag("parse", "a fix must be JSON {'edits': [...]} or a unified diff") from None
    if isinstance(data, list):
        data = {"edits": data}
    if not isinstance(data, dict):
        raise RedFlag("parse", "a fix must be a JSON object with 'edits' or 'diff'")
    if isinstance(data.get("diff"), str) and _is_diff(data["diff"]):
        return json.dumps({"diff": data["diff"].strip("\n") + "\n"})
    edits = data.get("edits")
    if not isinstance(edits, list) or not edits:
        raise RedFlag("parse", "'edits' must be a non-empty list of {file, search, replace}")
    out = []
    for i, edit in enumerate(edits):
        if not isinstance(edit, dict):
            raise RedFlag("parse", f"edit {i} must be an object")
        path, search, replace = edit.get("file"), edit.get("search", ""), edit.get("replace")
        if not isinstance(path, str) or not path.strip() or path.startswith("/") or ".." in Path(path).parts:
            raise RedFlag("parse", f"edit {i}: 'file' must be a relative path inside the repository")
        if not isinstance(search, str) or not isinstance(replace, str):
            raise RedFlag("parse", f"edit {i}: 'search' and 'replace' must be strings")
        if search == replace:
            raise RedFlag("parse", f"edit {i} changes nothing")
        out.append({"file": path.strip(), "search": search, "replace": replace})
    return json.dumps({"edits": out}, sort_keys=True)


def _find(content: str, search: str, path: str) -> tuple[int, int]:
    count = content.count(search)
    if count == 1:
        i = content.index(search)
        return i, i + len(search)
    if count > 1:
        raise PatchError(f"{path}: the search text appears {count} times; include more lines to make it unique")
    # tolerate trailing whitespace differences and a missing final newline, line by line
    want = [line.rstrip() for line in search.strip("\n").splitlines()]
    lines = content.splitlines(keepends=True)
    hits = [
        i for i in range(len(lines) - len(want) + 1) if [line.rstrip() for line in lines[i : i + len(want)]] == want
    ]
    if len(hits) != 1:
        what = "is not in the file" if not hits else f"appears {len(hits)} times"
        raise PatchError(f"{path}: the search text {what}; copy the lines exactly")
    start = sum(len(line) for line in lines[: hits[0]])
    end = start + sum(len(line) for line in lines[hits[0] : hits[0] + len(want)])
    return start, end


def _apply_edits(root: Path, edits: list[dict[str, str]]) -> None:
    for edit in edits:
        path, search, replace = edit["file"], edit["search"], edit["replace"]
        target = (root / path).resolve()
        if not target.is_relative_to(root.resolve()):
            raise PatchError(f"{path}: outside the repository")
        if not search:
            if target.exists():
                raise PatchError(f"{path}: an empty search creates a file, but the file exists")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(replace)
            continue
        if not target.is_file():
            raise PatchError(f"{path}: no such file")
        content = target.read_text()
        start, end = _find(content, search, path)
        new = replace
        if content[start:end].endswith("\n") and new and not new.endswith("\n"):
            new += "\n"
        target.write_text(content[:start] + new + content[end:])


def apply_fix(worktree: Path, fix: str, base: str = "HEAD") -> str:
    """Apply a canonical fix (from :func:`parse_fix`) in a clean ``worktree``; return the resulting git patch.

    Raises:
        PatchError: the fix does not apply, or changes nothing.
    """
    data = json.loads(fix)
    try:
        if "diff" in data:
            git_apply(worktree, data["diff"])
        else:
            _apply_edits(worktree, data["edits"])
        patch = diff_all(worktree, base)
    except GitError as err:
        raise PatchError(f"the diff does not apply: {err}") from None
    if not patch.strip():
        raise PatchError("the fix changes nothing")
    return patch


def normalize_patch(patch: str) -> str:
    """A canonical form of a patch for votes: per file, its removed and added lines with trailing whitespace
    and blank lines dropped (hunk positions, context and index lines do not matter)."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in patch.splitlines():
        m = _HEADER.match(line)
        if m:
            current = files.setdefault(m.group(2), [])
        elif current is not None and line[:1] in "+-" and not line.startswith(("+++", "---")):
            body = line[1:].rstrip()
            if body.strip():
                current.append(line[0] + body)
    return "\n".join(f"{name}\n" + "\n".join(lines) for name, lines in sorted(files.items()))
