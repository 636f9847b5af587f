"""``mdap run``: pipelines from config files (JSON, TOML, YAML) and from Python factories."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from mdap.agents.config import load_config
from mdap.cli import main
from mdap.errors import ConfigError

ROLES = {
    "roles": [
        {"name": "researcher", "description": "finds facts", "tools": ["python", "files"]},
        {"name": "writer", "description": "writes", "voter": {"kind": "majority", "n": 3}},
    ],
    "policy": {"max_concurrency": 2},
}


def test_run_from_a_json_roles_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps(ROLES))
    report = tmp_path / "result.json"
    code = main(
        ["run", "Write a haiku", "--roles", str(roles), "--no-checkpoint", "--no-progress", "--report", str(report)]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "status      ok" in out
    assert out.rstrip().endswith("[simulated] do the writer part")
    data = json.loads(report.read_text())
    assert [s["role"] for s in data["plan"]["subtasks"]] == ["researcher", "writer"]
    assert data["report"]["modules"]["writer"]["samples"] == 3  # majority of 3
    assert (tmp_path / "workspace").is_dir()  # the tools' workspace, beside the roles file


def test_toml_and_yaml_roles_files_give_the_same_pipeline(tmp_path: Path) -> None:
    toml = tmp_path / "roles.toml"
    toml.write_text(
        textwrap.dedent(
            """
            [roles.researcher]
            description = "finds facts"
            tools = ["python"]
            [roles.writer]
            description = "writes"
            voter = { kind = "majority", n = 3 }
            [policy]
            max_concurrency = 2
            """
        )
    )
    yaml = tmp_path / "roles.yaml"
    yaml.write_text(
        "roles:\n  - name: researcher\n    description: finds facts\n    tools: [python]\n"
        "  - name: writer\n    description: writes\n    voter: {kind: majority, n: 3}\npolicy:\n  max_concurrency: 2\n"
    )
    a, b = load_config(toml), load_config(yaml)
    assert a == b
    assert [r.name for r in a.roles] == ["researcher", "writer"]


def test_bad_roles_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"roles": [{"name": "w", "tools": ["browser"]}]}))
    assert main(["run", "t", "--roles", str(bad), "--no-progress"]) == 2
    assert "unknown tools ['browser']" in capsys.readouterr().err
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path / "x.json")
    (tmp_path / "x.ini").write_text("")
    with pytest.raises(ConfigError, match=r"use \.json, \.toml or \.yaml"):
        load_config(tmp_path / "x.ini")
    assert main(["run", "t", "--no-progress"]) == 2
    assert "needs --roles" in capsys.readouterr().err


def test_run_a_python_factory_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "pipe.py"
    script.write_text(
        textwrap.dedent(
            """
            import json
            from mdap import Pipeline, SimulatedModel, StaticPlanner
            from mdap.planners import fork_join

            def oracle(messages):
                return json.dumps({"answer": "done: " + messages[-1]["content"].splitlines()[0][13:]})

            def build():
                plan = fork_join(["a", "b"], worker="w", join="merge")
                return Pipeline("demo", model=SimulatedModel(oracle)).planner(StaticPlanner(plan)).role("w")
            """
        )
    )
    db = tmp_path / "runs.sqlite"
    args = ["run", f"{script}:build", "the task", "--checkpoint", str(db), "--no-progress", "--thread", "x"]
    assert main(args) == 0
    assert capsys.readouterr().out.rstrip().endswith("done: merge")
    assert main([*args, "--resume"]) == 2
    assert "already finished" in capsys.readouterr().err
    assert main(["run", f"{script}:nope", "t", "--no-progress"]) == 2
    assert "has no function 'nope'" in capsys.readouterr().err
