"""The ``mdap`` command line. Each subcommand lives in its own module under ``mdap/_cli`` with an
``add_parser(subparsers)`` function; the handler it sets returns the exit code.

Exit codes: 0 success, 1 the run finished but failed (a step undecided, a verifier error, a runtime error, an
output that could not be written: a full disk), 2 bad input (flags, config, checkpoint, an output path that
cannot be written: checked before the run starts).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sqlite3
import sys
import threading
import traceback
from collections.abc import Callable, Sequence

from mdap._outputs import disk_full_error
from mdap._redact import redact, redacting_logs
from mdap.errors import CheckpointError, ConfigError, MdapError, OutputError

__all__ = ["build_parser", "exit_on_sigterm", "main"]

Handler = Callable[[argparse.Namespace], int]

# One line per subcommand module (mdap/_cli/<name>.py); the order is the order of `mdap --help`.
_COMMANDS = (
    "mdap._cli.run",
    "mdap._cli.hanoi",
    "mdap._cli.serve",
    "mdap._cli.worker",
    "mdap._cli.pool",
    "mdap._cli.attribute",
    "mdap._cli.adapters",
    "mdap._cli.bench",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="mdap", description="Massively decomposed agentic processes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def exit_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM exit like an error does: ``finally`` blocks and ``atexit`` hooks run, so the servers a
    command started (and every process they forked) are stopped rather than orphaned. Commands that drain on
    SIGTERM (``worker``, ``serve``) install their own handler while they run.

    Returns:
        A function that puts the previous handler back (a no-op off the main thread, where none was set).
    """

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        return lambda: None
    previous = signal.signal(signal.SIGTERM, terminate)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also the console script's entry point)."""
    args = build_parser().parse_args(argv)
    restore = exit_on_sigterm()
    handler: Handler = args.handler
    try:
        with redacting_logs():  # no credential reaches a log line (URLs with passwords, api_key=, auth headers)
            return handler(args)
    except (ConfigError, CheckpointError) as err:
        _error(f"{err}")
        return 2
    except OutputError as err:
        _error(f"{err}")
        return 1
    except MdapError as err:
        _error(f"{type(err).__name__}: {err}")
        return 1
    except BrokenPipeError:  # `mdap ... | head` closed our stdout: not an error of the run
        _quiet_stdout()
        return 0
    except (OSError, sqlite3.Error) as err:
        full = disk_full_error(err, ())  # a full disk no command named itself: no traceback either
        if full is None:
            raise
        _error(f"{full}")
        return 1
    except KeyboardInterrupt:
        print("mdap: interrupted; run again with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
    except Exception:  # a bug: the traceback helps, a credential in its messages must not show (mdap._redact)
        print(redact(traceback.format_exc()), file=sys.stderr, end="")
        return 1
    finally:
        restore()  # an in-process caller (a test, an embedding program) keeps its own handler


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of a closed pipe raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no real file (a test's capture): nothing to flush at exit
        pass


def _error(message: str) -> None:
    """Print an error; the last line of defence against a credential in a message (see mdap._redact)."""
    print(f"mdap: error: {redact(message)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
