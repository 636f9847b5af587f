"""``mdap pool status``: what a Redis worker pool is doing."""

from __future__ import annotations

import argparse
import asyncio

from mdap._cli._args import positive_float

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``pool`` subcommand and its ``status`` action."""
    p = sub.add_parser("pool", help="inspect a Redis worker pool", description="Inspect a Redis worker pool.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = actions.add_parser(
        "status",
        help="live workers, roles, queue depths, pending/reclaimed/dead-letter counts",
        description="Show the live workers and, per role, queued, pending, done, reclaimed, retried and "
        "dead-letter counts.",
    )
    status.add_argument("--redis", required=True, metavar="URL", help="redis://[:password@]host:port/db or rediss://")
    status.add_argument("--prefix", default="mdap", help="key prefix of the pool (default mdap)")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--timeout", type=positive_float, default=5.0, help="seconds to reach Redis (default 5)")
    status.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from mdap.pool import pool_status

    status = asyncio.run(pool_status(args.redis, prefix=args.prefix, connect_timeout=args.timeout))
    if args.json:
        print(status.model_dump_json(indent=2))
        return 0
    print(f"workers ({len(status.workers)} live)")
    for w in status.workers:
        state = " draining" if w.draining else ""
        print(
            f"  {w.id}  role={w.role} pid={w.pid} concurrency={w.concurrency} in_flight={w.in_flight} "
            f"done={w.done} failed={w.failed} beat={w.seconds_since_beat:.1f}s ago{state}"
        )
    print(f"roles ({len(status.roles)})")
    for r in status.roles:
        print(
            f"  {r.role}  workers={r.workers} queued={r.queued} pending={r.pending} done={r.done} "
            f"reclaimed={r.reclaimed} retried={r.retried} duplicate={r.duplicate} dead_letter={r.dead_letter}"
        )
    return 0
