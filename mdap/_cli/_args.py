"""Argument types the subcommands share."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["id_list", "k_or_auto", "positive_int"]


def id_list(what: str) -> Callable[[str], list[str]]:
    """An argparse type for comma-separated ids; ``what`` names them in the error ("task ids")."""

    def parse(value: str) -> list[str]:
        ids = [part.strip() for part in value.split(",") if part.strip()]
        if not ids:
            raise argparse.ArgumentTypeError(f"give one or more {what}, separated by commas")
        return ids

    return parse


def positive_int(value: str) -> int:
    """An argparse type for an integer >= 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def k_or_auto(value: str) -> int | str:
    """An argparse type for a vote margin: an integer >= 1, or ``auto`` (calibrated)."""
    return value if value == "auto" else positive_int(value)
