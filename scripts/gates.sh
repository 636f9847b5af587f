#!/usr/bin/env bash
# The quality gates, as CI runs them: ruff (lint + format), mypy, import-linter. Run from anywhere.
#
# The sub-packages live in top-level folders (agents/, models/, ...) that the build maps to mdap.*; mypy and
# import-linter read source trees, not the build's mapping, so they check a tree of symlinks laid out as
# the installed package is.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
tree="$root/build/gates"
rm -rf "$tree" && mkdir -p "$tree/mdap"
for f in mdap/* mdap/.[!.]*; do [ -e "$f" ] && ln -s "$root/$f" "$tree/mdap/$(basename "$f")"; done
for sub in agents planners voters models evals; do ln -s "$root/$sub" "$tree/mdap/$sub"; done

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
(cd "$tree" && MYPYPATH="$tree" mypy --config-file "$root/pyproject.toml" -p mdap)
echo "== import-linter"
(cd "$tree" && PYTHONPATH="$tree" lint-imports --config "$root/pyproject.toml")
