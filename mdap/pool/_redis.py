"""Connecting to Redis: lazy import, credential-free URLs in messages (mdap._redact), and a bounded reconnect loop.

redis-py is imported here and only when a Redis pool is used, so ``import mdap`` never loads it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mdap._redact import redact
from mdap.errors import ConfigError, PoolError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["connect", "is_connection_error", "redact", "retrying", "stop_tasks"]

T = TypeVar("T")

_SCHEMES = ("redis", "rediss", "unix")


def check_url(url: str) -> str:
    """Validate the scheme of a Redis URL.

    Raises:
        ConfigError: not a ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL.
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"not a Redis URL: {redact(url)!r}; use redis://host:port/db, rediss://... (TLS) or unix:///path"
        )
    return url


def is_connection_error(err: BaseException) -> bool:
    """Whether ``err`` means the connection to Redis is gone (worth a reconnect), not a command error."""
    from redis.exceptions import BusyLoadingError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(err, RedisConnectionError | RedisTimeoutError | BusyLoadingError | OSError)


async def connect(url: str, *, connect_timeout: float = 5.0, read_timeout: float | None = None) -> Redis:
    """Open a client for ``url`` and check the server answers within ``connect_timeout`` seconds.

    Args:
        url: ``redis://[:password@]host:port/db`` or ``rediss://`` for TLS (redis-py's URL options apply,
            e.g. ``?ssl_ca_certs=/path/ca.pem``).
        connect_timeout: seconds to connect and get the first PING answer.
        read_timeout: socket read timeout of every command; None = no limit (blocking reads pass their own).

    Raises:
        ConfigError: not a Redis URL.
        PoolError: Redis cannot be reached or refuses us (the message names the URL without credentials).
    """
    check_url(url)
    try:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError
    except ImportError as err:  # pragma: no cover -- redis is a declared dependency
        raise PoolError("the Redis pool needs redis-py: pip install 'redis>=5'") from err
    try:
        client: Redis = Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=read_timeout,
            retry=Retry(NoBackoff(), 0),  # we reconnect ourselves, with a deadline (see retrying)
            health_check_interval=15,
        )
    except (ValueError, TypeError) as err:
        raise ConfigError(redact(f"bad Redis URL {url!r}: {err}")) from None
    try:
        async with asyncio.timeout(connect_timeout):  # not wait_for: see stop_tasks
            await client.ping()
    except (TypeError, ValueError) as err:  # redis-py checks URL options only when it connects
        await client.aclose()
        raise ConfigError(
            redact(f"bad Redis URL options in {url!r} ({err}); TLS options (ssl_*) need a rediss:// URL")
        ) from None
    except (TimeoutError, RedisError, OSError) as err:
        await client.aclose()
        kind = type(err).__name__
        detail = redact(str(err)) if str(err) else "no answer"
        raise PoolError(
            f"cannot reach Redis at {redact(url)} within {connect_timeout:g} s ({kind}: {detail}); "
            "start redis-server or fix the URL (password, TLS with rediss://)"
        ) from None
    return client


async def retrying(
    op: Callable[[], Awaitable[T]],
    *,
    what: str,
    url: str,
    deadline_s: float,
    on_retry: Callable[[BaseException], Any] | None = None,
) -> T:
    """Run ``op``; while Redis is unreachable retry with backoff for up to ``deadline_s`` seconds.

    Raises:
        PoolError: Redis stayed unreachable for ``deadline_s`` seconds.
    """
    end = time.monotonic() + deadline_s
    pause = 0.05
    while True:
        try:
            return await op()
        except Exception as err:
            if not is_connection_error(err):
                raise
            if time.monotonic() + pause > end:
                raise PoolError(
                    f"lost Redis at {redact(url)} for {deadline_s:g} s while trying to {what} "
                    f"({type(err).__name__}); check the server and run again (a checkpointed run resumes)"
                ) from None
            if on_retry is not None:
                on_retry(err)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)


async def stop_tasks(*tasks: asyncio.Task[Any], every_s: float = 0.5) -> None:
    """Cancel ``tasks`` and wait until each has ended, cancelling again every ``every_s`` seconds.

    One cancel is not always enough for a task that talks to Redis: on Python 3.11, ``asyncio.wait_for`` -- which
    redis-py wraps around every command it writes when a socket timeout is set -- returns its result and drops a
    cancellation that arrives as the write completes (CPython bpo-42130, fixed in 3.12). The task then runs on.
    Exceptions of the ended tasks are retrieved (the caller has seen what mattered), never raised.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=every_s)
    for task in tasks:
        if not task.cancelled():
            task.exception()
