"""``--sandbox bubblewrap|none``: where the model-written code of a command's tools, tests and grading runs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mdap.agents import Sandbox

__all__ = ["add_sandbox_flag", "use_sandbox"]


def add_sandbox_flag(p: argparse.ArgumentParser) -> None:
    """Add ``--sandbox`` to a subcommand that runs model-written code."""
    p.add_argument(
        "--sandbox",
        choices=("bubblewrap", "none"),
        default="bubblewrap",
        help="where model-written code (tools, tests, grading) runs: bubblewrap (default; isolated: no network, "
        "no host files but the workspace, limits) or none (UNSAFE: on this machine, unisolated)",
    )


def use_sandbox(args: argparse.Namespace, *, check: bool = True) -> Sandbox:
    """Make ``--sandbox`` the process's default sandbox (tools built without one use it) and, with ``check``,
    make sure it works here before any work starts.

    Raises:
        SandboxError: bubblewrap is missing or cannot make its namespaces (exit 2, naming the fix).
    """
    from mdap.agents import Sandbox

    box = Sandbox.named(args.sandbox)
    Sandbox.set_default(box)
    if check:
        box.check()
    return box
