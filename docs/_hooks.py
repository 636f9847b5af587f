"""MkDocs hook: lay out the package as installed, for mkdocstrings to read.

The subpackages live in top-level folders (agents/, models/, ...) that the build maps to ``mdap.*``; griffe reads
source trees, not the build's mapping, so it reads a tree of symlinks laid out as the installed package is (as
``scripts/gates.sh`` does for mypy and import-linter), in ``build/docs-src``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / "build" / "docs-src"
SUBPACKAGES = ("agents", "planners", "voters", "models", "evals")


def lay_out() -> None:
    """(Re)make ``build/docs-src/mdap``: links to ``mdap/*`` and to each mapped subpackage folder."""
    shutil.rmtree(TREE, ignore_errors=True)
    package = TREE / "mdap"
    package.mkdir(parents=True)
    for entry in (ROOT / "mdap").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for sub in SUBPACKAGES:
        (package / sub).symlink_to(ROOT / sub)


def on_startup(**_: Any) -> None:
    lay_out()
