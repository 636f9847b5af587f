"""The markers of the optional parts: a test needing a missing part skips with the install hint, and fails with
CI=true (so CI can never go green by skipping)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, *, ci: bool) -> subprocess.CompletedProcess[str]:
    """Run a test marked ``redis`` with tests/conftest.py as a plugin, on a PATH without redis-server."""
    (tmp_path / "test_needs_redis.py").write_text("import pytest\n\n\n@pytest.mark.redis\ndef test_x():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(PATH=str(Path(sys.executable).parent), PYTHONPATH=str(TESTS))
    if ci:
        env["CI"] = "true"
    argv = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q", "-rs"]
    argv += ["--rootdir", str(tmp_path), "-c", str(tmp_path / "none.ini"), str(tmp_path)]
    (tmp_path / "none.ini").write_text("[pytest]\n")
    return subprocess.run(argv, env=env, capture_output=True, text=True, cwd=tmp_path, check=False)


def test_a_missing_part_skips_with_the_hint_and_fails_in_ci(tmp_path: Path) -> None:
    local = _run(tmp_path, ci=False)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "1 skipped" in local.stdout and "apt-get install redis-server" in local.stdout
    ci = _run(tmp_path, ci=True)
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert "CI=true" in ci.stdout and "1 error" in ci.stdout


def test_markers_are_registered_and_strict() -> None:
    import tomllib

    config = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in config["addopts"]
    names = {m.split(":", 1)[0] for m in config["markers"]}
    assert names == {"local_model", "train", "redis", "sandbox"}
