"""`mdap pool status` and `mdap worker` never print a Redis password, in the userinfo or as ?password=."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from pool_helpers import RedisServer, Workers, free_port, wait_until

MDAP = [sys.executable, "-m", "mdap.cli"]


def status(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [*MDAP, "pool", "status", "--redis", url, "--timeout", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_pool_status_and_workers_never_print_the_password(
    redis_factory: Callable[..., RedisServer], workers: Workers
) -> None:
    server = redis_factory("--appendonly", "no", password="SECRET")
    good = [server.url, f"redis://127.0.0.1:{server.port}/0?password=SECRET"]
    assert good[0] == f"redis://:SECRET@127.0.0.1:{server.port}"
    workers.start(good[1], "--heartbeat", "0.3", "-v")
    for url in good:
        wait_until(lambda u=url: "workers (1 live)" in status(u).stdout, 20, "the worker")  # type: ignore[misc]
        shown = status(url)
        assert shown.returncode == 0, shown.stderr
        assert "hanoi  workers=1" in shown.stdout
        assert "SECRET" not in shown.stdout + shown.stderr
        as_json = status(url, "--json")
        assert as_json.returncode == 0 and "SECRET" not in as_json.stdout
    bad = [
        f"redis://:WRONGSECRET@127.0.0.1:{server.port}",
        f"redis://127.0.0.1:{free_port()}?password=SECRET",
        f"redis://user:SECRET@127.0.0.1:{free_port()}/0",
        f"http://user:SECRET@127.0.0.1:{server.port}",
    ]
    for url in bad:
        failed = status(url)
        assert failed.returncode in (1, 2) and failed.stderr.startswith("mdap: error:"), failed.stderr
        assert "SECRET" not in failed.stdout + failed.stderr, failed.stderr
    assert "password=***" in status(bad[1]).stderr
    assert workers.stop_all() == [0]
    log = workers.output()
    assert "serving role 'hanoi' on redis://127.0.0.1" in log and "password=***" in log
    assert "SECRET" not in log
