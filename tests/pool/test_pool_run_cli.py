"""`mdap run --pool`: a pipeline's subtasks run on `mdap worker --pipeline` processes, one per role."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from pool_helpers import RedisServer, Workers, wait_until

from mdap.cli import main
from mdap.pool import pool_status

ROLES = {
    "roles": [
        {"name": "researcher", "description": "finds facts"},
        {"name": "writer", "description": "writes", "voter": {"kind": "majority", "n": 3}},
    ]
}


def test_mdap_run_sends_each_subtask_to_the_workers_of_its_role(
    redis_server: RedisServer, workers: Workers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = redis_server.url
    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps(ROLES))
    for role in ("researcher", "writer"):
        workers.start(url, "--pipeline", str(roles), "--heartbeat", "0.3", role=role)
    wait_until(lambda: len(asyncio.run(pool_status(url)).workers) == 2, 20, "2 live workers")
    report = tmp_path / "result.json"
    args = ["run", "Write a haiku", "--roles", str(roles), "--pool", url, "--no-checkpoint", "--no-progress"]
    assert main([*args, "--report", str(report)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("[simulated] do the writer part")
    data = json.loads(report.read_text())
    assert data["report"]["modules"]["writer"]["samples"] == 3  # the writer's majority-of-3 voted on its worker
    status = asyncio.run(pool_status(url))
    assert {r.role: r.done for r in status.roles} == {"researcher": 1, "writer": 1}
    wait_until(
        lambda: {w.role: w.done for w in asyncio.run(pool_status(url)).workers} == {"researcher": 1, "writer": 1},
        5,
        "each worker's heartbeat to count its subtask",
    )
    assert workers.stop_all() == [0, 0]
