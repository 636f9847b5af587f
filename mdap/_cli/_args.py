"""Argument types the subcommands share."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["id_list"]


def id_list(what: str) -> Callable[[str], list[str]]:
    """An argparse type for comma-separated ids; ``what`` names them in the error ("task ids")."""

    def parse(value: str) -> list[str]:
        ids = [part.strip() for part in value.split(",") if part.strip()]
        if not ids:
            raise argparse.ArgumentTypeError(f"give one or more {what}, separated by commas")
        return ids

    return parse
