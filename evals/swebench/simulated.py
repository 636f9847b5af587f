"""A scripted simulated model that plays every module of the default pipeline, for tests and dry runs.

It knows each instance's gold and test patches, so its outcome is known in advance:

- ``test_template`` lists the tests folder (one tool round), then answers a template;
- ``reproduce`` writes the instance's hidden test patch into the checkout and applies it with ``git apply``
  (a perfect reproducer), then answers with the test files;
- ``localize`` names the files of the gold patch;
- ``fix<i>`` answers by the instance's script: ``"gold"`` (the gold patch as search/replace edits),
  ``"wrong"`` (an edit that applies but fixes nothing) or ``"junk"`` (not a fix: red-flagged until the vote
  gives up and the subtask fails).

With the default script an instance in ``solved`` gets ``["wrong", "gold", "gold"]`` (the ranker must pick gold
by the reproduction test) and any other ``["wrong", "wrong", "junk"]``.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence

from mdap.models import SimulatedModel
from mdap.types import Message

from .instances import SWEInstance
from .testrun import files_of_tests

__all__ = ["diff_to_edits", "simulated_swebench_model", "solved_by_rate"]

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@")
_CANDIDATE = re.compile(r"candidate fix (\d+) of (\d+)")


def diff_to_edits(patch: str) -> list[dict[str, str]]:
    """A unified diff as search/replace edits (one per hunk: context+removed -> context+added)."""
    edits: list[dict[str, str]] = []
    path = ""
    new_file = False
    old: list[str] = []
    new: list[str] = []

    def flush() -> None:
        if old or new:
            edits.append({"file": path, "search": "" if new_file else "".join(old), "replace": "".join(new)})
        old.clear()
        new.clear()

    for line in patch.splitlines(keepends=True):
        if line.startswith("diff --git "):
            flush()
            path, new_file = line.split(" b/", 1)[1].strip(), False
        elif line.startswith("--- "):
            new_file = line.strip() == "--- /dev/null"
        elif line.startswith("+++ ") or line.startswith(("index ", "new file mode", "\\")):
            continue
        elif _HUNK.match(line):
            flush()
        elif line.startswith("-"):
            old.append(line[1:])
        elif line.startswith("+"):
            new.append(line[1:])
        elif line.startswith(" ") or line in ("\n", ""):
            body = line[1:] if line.startswith(" ") else line
            old.append(body)
            new.append(body)
    flush()
    return edits


def _wrong_edit(patch: str) -> list[dict[str, str]]:
    edits = diff_to_edits(patch)
    first = edits[0]
    removed = [ln for ln in patch.splitlines() if ln.startswith("-") and not ln.startswith("---") and ln[1:].strip()]
    line = removed[0][1:] if removed else first["search"].splitlines()[0]
    return [{"file": first["file"], "search": line, "replace": line.rstrip() + "  # mdap: unverified change"}]


def solved_by_rate(instances: Iterable[SWEInstance], rate: float, seed: int = 0) -> set[str]:
    """The instance ids a simulated run solves at ``rate``, chosen by a seeded hash of each id."""
    return {i.instance_id for i in instances if zlib.crc32(f"{seed}:{i.instance_id}".encode()) / 2**32 < max(rate, 0.0)}


def _answer(value: object) -> str:
    return json.dumps({"answer": value})


def _call(*calls: tuple[str, dict[str, str]]) -> str:
    return json.dumps(
        {
            "tool_calls": [
                {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                for i, (name, args) in enumerate(calls)
            ]
        }
    )


def simulated_swebench_model(
    instances: Sequence[SWEInstance],
    *,
    solved: Iterable[str] = (),
    scripts: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    latency_s: float = 0.0,
) -> SimulatedModel:
    """The scripted model (see the module doc).

    Args:
        instances: the instances it may be asked about (recognized by their issue text).
        solved: instance ids whose candidates include the gold patch (default script).
        scripts: per instance id, the kind of each candidate fix (``"gold"``, ``"wrong"``, ``"junk"``);
            overrides ``solved`` for those ids. Candidates past the script's end are ``"wrong"``.
        seed: the simulated model's seed.
        latency_s: seconds per request.
    """
    solved_ids = set(solved)
    table = {i.instance_id: i for i in instances}

    def script(inst: SWEInstance) -> Sequence[str]:
        if scripts is not None and inst.instance_id in scripts:
            return scripts[inst.instance_id]
        return ("wrong", "gold", "gold") if inst.instance_id in solved_ids else ("wrong", "wrong", "junk")

    def which(text: str) -> SWEInstance | None:
        for inst in table.values():
            if inst.problem_statement.strip() and inst.problem_statement.strip() in text:
                return inst
        return None

    def oracle(messages: Sequence[Message]) -> str:
        system = messages[0]["content"]
        task = messages[1]["content"] if len(messages) > 1 else ""
        after_tools = messages[-1]["content"].startswith("Tool results:")
        inst = which(task)
        if system.startswith("You find out how"):
            if not after_tools:
                return _call(("list_files", {"path": "."}))
            return _answer("Tests are pytest functions in tests/test_*.py; run: python -m pytest -q tests/FILE.py")
        if inst is None:
            return _answer("no instance matches this prompt")
        tests = files_of_tests([*inst.FAIL_TO_PASS, *inst.PASS_TO_PASS])
        touched = files_of_tests(inst.FAIL_TO_PASS)
        if system.startswith("You reproduce"):
            if not after_tools:
                return _call(
                    ("write_file", {"path": ".mdap_repro.patch", "content": inst.test_patch}),
                    ("shell", {"command": "git apply .mdap_repro.patch && rm .mdap_repro.patch"}),
                )
            return _answer("The reproduction test is in " + " ".join(touched or tests))
        if system.startswith("You localize"):
            files = [e["file"] for e in diff_to_edits(inst.patch)]
            return _answer("\n".join(f"{f}: the code the issue describes" for f in dict.fromkeys(files)))
        if system.startswith("You fix"):
            m = _CANDIDATE.search(task)
            index = int(m.group(1)) - 1 if m else 0
            kinds = script(inst)
            kind = kinds[index] if index < len(kinds) else "wrong"
            if kind == "gold":
                return _answer({"edits": diff_to_edits(inst.patch)})
            if kind == "junk":
                return "I think the bug is somewhere in the code."
            return _answer({"edits": _wrong_edit(inst.patch)})
        return _answer("unknown module")

    return SimulatedModel(oracle, seed=seed, latency_s=latency_s)
