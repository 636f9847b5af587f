"""The swe_mini suite we ship: small real Python repositories with real bugs, in the SWE-bench instance format.

``evals/data/swe_mini/`` holds, per repository, its source at the base commit as a ``<name>.tree`` text file
(``=== path`` starts a file) and ``instances.json`` with one SWE-bench instance per repository (issue text,
gold patch, hidden test patch, FAIL_TO_PASS and PASS_TO_PASS). :func:`build_mini` writes the repositories as
git repos with a fixed author and date, so their commits are exactly the ``base_commit`` of the instances.

    python -m mdap.evals.swebench.mini --out DIR

writes ``DIR/repos/<name>`` (git repos), ``DIR/instances.json`` and ``DIR/gold_predictions.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mdap.errors import ConfigError

from ._proc import GitError, git
from .instances import SWEInstance, load_instances
from .predictions import Prediction

__all__ = ["MINI_MODEL_NAME", "MiniSuite", "build_mini", "main", "mini_data_dir", "read_tree"]

MINI_MODEL_NAME = "gold"
"""``model_name_or_path`` of the gold predictions :func:`build_mini` writes."""

_DATE = "2024-01-01T00:00:00+0000"
_ENV = {
    "GIT_AUTHOR_NAME": "mdap swe_mini",
    "GIT_AUTHOR_EMAIL": "swe-mini@mdap.invalid",
    "GIT_COMMITTER_NAME": "mdap swe_mini",
    "GIT_COMMITTER_EMAIL": "swe-mini@mdap.invalid",
    "GIT_AUTHOR_DATE": _DATE,
    "GIT_COMMITTER_DATE": _DATE,
}


@dataclass(frozen=True)
class MiniSuite:
    """Where :func:`build_mini` wrote the suite."""

    root: Path
    repos: Path
    instances_file: Path
    gold_predictions: Path
    instances: list[SWEInstance]


def mini_data_dir() -> Path:
    """The shipped ``swe_mini`` data folder."""
    return Path(str(resources.files("mdap.evals").joinpath("data", "swe_mini")))


def read_tree(path: Path) -> dict[str, str]:
    """Parse a ``.tree`` file: ``=== relative/path`` lines start files, the lines up to the next one are its text.

    Raises:
        ConfigError: text before the first file, an unsafe path, or a file given twice.
    """
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(keepends=True), 1):
        if line.startswith("=== "):
            name = line[4:].strip()
            if not name or name.startswith("/") or ".." in Path(name).parts or name in files:
                raise ConfigError(f"{path}: line {number}: bad or repeated file name {name!r}")
            current = files[name] = []
        elif current is None:
            if line.strip() and not line.startswith("#"):
                raise ConfigError(f"{path}: line {number}: text before the first '=== path' line")
        else:
            current.append(line)
    return {name: "".join(lines) for name, lines in files.items()}


def _make_repo(dest: Path, files: dict[str, str], message: str) -> str:
    dest.mkdir(parents=True)
    for name, text in files.items():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        target.chmod(0o644)
    git(["init", "-q", "-b", "main"], cwd=dest, env=_ENV)
    git(["add", "-A"], cwd=dest, env=_ENV)
    git(["commit", "-q", "--no-verify", "--no-gpg-sign", "-m", message], cwd=dest, env=_ENV)
    return git(["rev-parse", "HEAD"], cwd=dest).strip()


def build_mini(out: str | Path, *, data: Path | None = None, force: bool = False) -> MiniSuite:
    """Write the swe_mini repositories, instance file and gold predictions under ``out``.

    Args:
        out: the output folder (created).
        data: the data folder (default: the shipped one).
        force: replace an existing ``out/repos``.

    Raises:
        ConfigError: ``out/repos`` exists (without ``force``), or a built commit differs from the instance's
            ``base_commit`` (the data was edited without updating ``instances.json``).
    """
    data = data or mini_data_dir()
    root = Path(out)
    repos = root / "repos"
    if repos.exists():
        if not force:
            raise ConfigError(f"{repos} already exists; pass force=True (--force) to replace it")
        shutil.rmtree(repos)
    instances = load_instances(data / "instances.json")
    for inst in instances:
        tree = data / f"{inst.name}.tree"
        if not tree.is_file():
            raise ConfigError(f"swe_mini data: no source tree {tree} for instance {inst.instance_id}")
        try:
            sha = _make_repo(repos / inst.name, read_tree(tree), f"{inst.name} {inst.version}")
        except GitError as err:
            raise ConfigError(f"could not create the git repository {repos / inst.name}: {err}") from None
        if sha != inst.base_commit:
            raise ConfigError(
                f"swe_mini: {inst.name} was built as commit {sha}, but instance {inst.instance_id} has base_commit "
                f"{inst.base_commit}; the tree file and instances.json disagree"
            )
    instances_file = root / "instances.json"
    instances_file.write_text(json.dumps([i.record() for i in instances], indent=2) + "\n")
    gold = root / "gold_predictions.jsonl"
    lines = [
        Prediction(instance_id=i.instance_id, model_name_or_path=MINI_MODEL_NAME, model_patch=i.patch).model_dump()
        for i in instances
    ]
    gold.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return MiniSuite(root, repos, instances_file, gold, instances)


def main(argv: list[str] | None = None) -> int:
    """``python -m mdap.evals.swebench.mini --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m mdap.evals.swebench.mini",
        description="Write the swe_mini SWE-bench suite: git repos, instances.json, gold_predictions.jsonl.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT/repos")
    args = parser.parse_args(argv)
    try:
        suite = build_mini(args.out, force=args.force)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(suite.instances)} repositories to {suite.repos}")
    print(f"instances: {suite.instances_file}")
    print(f"gold predictions: {suite.gold_predictions}")
    return 0
