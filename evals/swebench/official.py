"""``--harness official``: grade with SWE-bench's own harness (``swebench.harness.run_evaluation``) on Docker.

mdap only checks that a Docker daemon answers and that the ``swebench`` package is installed, then hands the
predictions and the instance file to the harness and copies its run report to the requested path. The
harness builds its images and fetches the repositories itself (from the network): use it where that is
allowed; the local grader (the default) needs neither Docker nor the network.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from mdap.errors import ConfigError

__all__ = ["docker_problem", "run_official"]


def docker_problem() -> str | None:
    """None when a Docker daemon answers ``/_ping`` (``DOCKER_HOST`` or the default socket), else why not."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        if host.startswith("unix://"):
            path = host[len("unix://") :]
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(3.0)
            sock.connect(path)
        elif host.startswith("tcp://"):
            name, _, port = host[len("tcp://") :].rstrip("/").rpartition(":")
            sock = socket.create_connection((name, int(port)), timeout=3.0)
        else:
            return f"DOCKER_HOST={host} is not a unix:// or tcp:// address"
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(1024).decode(errors="replace")
    except (OSError, ValueError) as err:
        return f"no Docker daemon answers at {host} ({err})"
    if " 200 " not in reply.split("\r\n", 1)[0]:
        return f"the Docker daemon at {host} did not answer /_ping with 200"
    return None


def run_official(
    predictions: Path,
    instances: Path,
    report: Path,
    *,
    run_id: str = "mdap",
    workers: int = 1,
    timeout_s: float = 1800.0,
    ids: list[str] | None = None,
) -> Path:
    """Run ``swebench.harness.run_evaluation`` on ``predictions`` for the instances in ``instances`` (a JSON or
    JSONL file), and copy its run report to ``report``.

    Raises:
        ConfigError: no Docker daemon, the swebench package is missing, or the harness wrote no report.
    """
    problem = docker_problem()
    if problem is not None:
        raise ConfigError(
            f"--harness official needs a running Docker daemon: {problem}. Start Docker (or set DOCKER_HOST), "
            "or grade with the local grader (the default, --harness local)"
        )
    try:
        from swebench.harness.run_evaluation import main as run_evaluation
    except ImportError as err:
        raise ConfigError(
            f"--harness official needs the swebench package ({err}): pip install 'mdap[swebench-harness]'"
        ) from None
    out_dir = report.parent if str(report.parent) else Path(".")
    run_evaluation(
        dataset_name=str(instances),
        split="test",
        instance_ids=ids or [],
        predictions_path=str(predictions),
        max_workers=workers,
        open_file_limit=4096,
        run_id=run_id,
        timeout=int(timeout_s),
        rewrite_reports=False,
        modal=False,
        report_dir=str(out_dir),
    )
    made = sorted(out_dir.glob(f"*.{run_id}.json"), key=lambda p: p.stat().st_mtime)
    if not made:
        raise ConfigError(f"the official harness wrote no report '*.{run_id}.json' in {out_dir}")
    if made[-1].resolve() != report.resolve():
        shutil.copyfile(made[-1], report)
    return report
