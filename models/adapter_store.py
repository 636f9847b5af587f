"""Where trained adapters live by default, so a run can ask for one by name (``--adapter hanoi``).

``mdap adapters train --role NAME`` writes to ``<cache>/adapters/NAME`` unless given ``--out``; a run that names
an adapter finds it there, or takes a path to any PEFT folder.
"""

from __future__ import annotations

from pathlib import Path

from mdap.errors import ConfigError

from .adapters import Adapter
from .local import cache_dir

__all__ = ["adapters_dir", "resolve_adapter"]


def adapters_dir() -> Path:
    """The default adapter folder: ``<mdap cache>/adapters`` (see :func:`mdap.models.local.cache_dir`)."""
    return cache_dir() / "adapters"


def resolve_adapter(name: str, path: str | Path | None = None) -> Adapter:
    """The adapter ``name``: from ``path`` when given, else from ``adapters_dir() / name``.

    Raises:
        ConfigError: no such folder, or it holds no PEFT adapter.
    """
    folder = Path(path).expanduser() if path is not None else adapters_dir() / name
    if not folder.is_dir():
        raise ConfigError(
            f"no adapter {name!r} at {folder}: train one with `mdap adapters train --role {name} ...`, "
            "or give the adapter folder's path"
        )
    return Adapter.from_peft(name, folder)
