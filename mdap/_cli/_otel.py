"""The telemetry flags the run commands share: ``--otlp URL`` (OpenTelemetry spans over OTLP/HTTP) and
``--trace-detail`` (what a JSONL trace holds)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mdap._cli._args import http_url

__all__ = ["add_otlp_flag", "add_trace_detail_flag", "otlp_exporter"]


def add_otlp_flag(p: argparse.ArgumentParser) -> None:
    """Add ``--otlp URL``."""
    p.add_argument(
        "--otlp",
        type=http_url,
        default=None,
        metavar="URL",
        help="export OpenTelemetry spans (run -> subtask -> vote -> sample) over OTLP/HTTP to this collector, "
        "e.g. http://127.0.0.1:4318 (needs pip install 'mdap[otel]')",
    )


def add_trace_detail_flag(p: argparse.ArgumentParser) -> None:
    """Add ``--trace-detail counts|full``."""
    p.add_argument(
        "--trace-detail",
        choices=("counts", "full"),
        default="counts",
        help="what --trace holds: counts (default), or full: also every sample's text, the losing answers and "
        "tool inputs and outputs (secrets redacted)",
    )


@contextmanager
def otlp_exporter(args: argparse.Namespace) -> Iterator[Any]:
    """The TracerProvider that exports to ``--otlp`` (flushed and shut down on the way out), or None.

    Raises:
        ConfigError: ``--otlp`` without OpenTelemetry installed (with the install hint).
    """
    if getattr(args, "otlp", None) is None:
        yield None
        return
    from mdap.agents.telemetry import otlp_provider

    provider = otlp_provider(args.otlp)
    try:
        yield provider
    finally:
        provider.shutdown()
