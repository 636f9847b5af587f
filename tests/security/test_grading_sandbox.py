"""Grading runs a prediction's patch: it must see only the checkout and a minimal environment, with no network.
Before, ``testrun`` copied ``os.environ`` into the test run and ran it on the host."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from mdap.evals.swebench import MiniSuite, build_mini, grade_instance
from mdap.evals.swebench._proc import checkout_at, diff_all

SECRET = "sk-mdap-grading-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> MiniSuite:
    return build_mini(tmp_path_factory.mktemp("swe_mini"))


def _gold(mini: MiniSuite, instance_id: str) -> str:
    for line in mini.gold_predictions.read_text().splitlines():
        pred = json.loads(line)
        if pred["instance_id"] == instance_id:
            return str(pred["model_patch"])
    raise AssertionError(instance_id)


def test_a_patch_cannot_leak_the_environment_or_reach_the_network(
    mini: MiniSuite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_listener: tuple[int, list[bytes]]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    port, connections = host_listener
    inst = mini.instances[0]
    leak = tmp_path / "leak.json"  # an absolute path on the host, outside the checkout
    evil = (  # runs when pytest loads it; what it saw goes into the log's header
        "import json, os, socket\n"
        "seen = ['ENV ' + json.dumps(dict(os.environ))]\n"
        "try:\n"
        f"    open({str(leak)!r}, 'w').write(json.dumps(dict(os.environ)))\n"
        "except OSError as e:\n"
        "    seen.append('WRITE ' + type(e).__name__)\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "    seen.append('NET connected')\n"
        "except OSError as e:\n"
        "    seen.append('NET ' + type(e).__name__)\n"
        "def pytest_report_header(config):\n"
        "    return seen\n"
    )
    # The gold fix plus a conftest.py that runs at collection: the tests still pass, the attack does nothing.
    checkout = tmp_path / "edit"
    sha = checkout_at(mini.repos / inst.name, inst.base_commit, checkout)
    from mdap.evals.swebench._proc import git_apply

    git_apply(checkout, _gold(mini, inst.instance_id))
    (checkout / "conftest.py").write_text(evil)
    patch = diff_all(checkout, sha)

    grade = grade_instance(inst, patch, mini.repos, log_dir=tmp_path / "logs", timeout_s=120)
    log = (tmp_path / "logs" / f"{inst.instance_id}.log").read_text()
    assert grade.resolved, (grade.error, log[-2000:])
    assert "ENV {" in log and "WRITE" in log and "NET" in log  # the conftest ran...
    assert SECRET not in log and "OPENAI_API_KEY" not in log  # ...and saw none of our environment
    assert not leak.exists()
    assert connections == [] and "NET connected" not in log
