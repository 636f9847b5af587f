"""``--price-in`` / ``--price-out``: a model's price per million tokens, on every command that takes ``--model``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mdap._cli._args import nonneg_float

if TYPE_CHECKING:
    from mdap.models import Price

__all__ = ["add_price_flags", "price_of"]


def add_price_flags(p: argparse._ActionsContainer) -> None:
    """Add ``--price-in`` and ``--price-out`` (non-negative finite numbers, per million tokens)."""
    p.add_argument(
        "--price-in",
        type=nonneg_float,
        default=None,
        metavar="PRICE",
        help="the model's price per million input (prompt) tokens; with --price-out, reports show costs "
        "(else 'cost n/a (no price set)')",
    )
    p.add_argument(
        "--price-out",
        type=nonneg_float,
        default=None,
        metavar="PRICE",
        help="the model's price per million output (completion) tokens",
    )


def price_of(args: argparse.Namespace, default: Price | None = None) -> Price | None:
    """The price the flags give (a missing one is 0), else ``default`` (e.g. a roles file's ``price``)."""
    if args.price_in is None and args.price_out is None:
        return default
    from mdap.models import Price

    return Price(input_per_m=args.price_in or 0.0, output_per_m=args.price_out or 0.0)
