"""Packaging: the wheel maps the folders to mdap.* and never installs top-level agents/models packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUBPACKAGES = ("agents", "planners", "voters", "models", "evals")


def test_wheel_holds_only_the_mdap_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("mdap-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"mdap"}
    for sub in SUBPACKAGES:
        assert f"mdap/{sub}/__init__.py" in names
    assert "mdap/py.typed" in names
    assert "mdap/evals/hanoi/task.py" in names
    assert not any(n.startswith("tests/") for n in names)


def test_installed_subpackages_resolve_under_mdap() -> None:
    import mdap.agents
    import mdap.evals
    import mdap.models
    import mdap.planners
    import mdap.voters

    for mod, folder in zip(
        (mdap.agents, mdap.planners, mdap.voters, mdap.models, mdap.evals), SUBPACKAGES, strict=True
    ):
        assert Path(mod.__file__ or "").parent.name == folder
