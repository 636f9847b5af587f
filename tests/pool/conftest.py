"""Fixtures of the Redis pool tests: real redis-server processes and `mdap worker` processes, cleaned up."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pool_helpers import REDIS_SERVER, RedisServer, Workers, free_port


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-servers with extra arguments; all are stopped at the end of the test."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    started: list[RedisServer] = []

    def make(*args: str, password: str | None = None, port: int | None = None) -> RedisServer:
        d = tmp_path / f"redis{len(started)}"
        d.mkdir()
        server = RedisServer(port or free_port(), d, list(args), password)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """A throwaway redis-server without persistence."""
    return redis_factory("--appendonly", "no")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    ws = Workers(tmp_path)
    yield ws
    for proc in ws.procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
