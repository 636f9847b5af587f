"""Subcommands of the ``mdap`` CLI, one module each (see mdap/cli.py)."""
