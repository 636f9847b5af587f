"""LoRA adapters as named values, and a registry that maps pipeline roles to them.

An adapter's identity is its name: a server serves it under that name, and a worker asks for it by putting the
name in the request's ``model`` field. Switching a role to another adapter is therefore a config change
(``registry.assign("planner", "planner-v2")``), never a code change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mdap.errors import ConfigError
from mdap.jsontext import loads_json

__all__ = ["Adapter", "AdapterRegistry", "read_peft_config", "same_base"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _check_name(name: str, what: str = "adapter name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"invalid {what} {name!r}: use letters, digits, '_', '.' and '-' (starting with a letter or digit)"
        )
    return name


def _base_keys(base: str | Path) -> set[str]:
    """The names a base model is known by: as written, and its resolved folder when it is a local path."""
    text = str(base).strip().rstrip("/")
    keys = {text}
    path = Path(text).expanduser()
    if path.exists():
        keys.add(str(path.resolve()))
    return keys


def same_base(a: str | Path, b: str | Path, *, aliases: Iterable[str] = ()) -> bool:
    """Whether base model ``a`` is ``b``: equal names, the same local folder, or ``a`` is one of ``aliases``.

    ``aliases`` are other names of ``b`` (e.g. the hub id of a model served from a converted local folder).
    """
    keys_b = _base_keys(b)
    for alias in aliases:
        keys_b |= _base_keys(alias)
    return bool(_base_keys(a) & keys_b)


@dataclass(frozen=True, slots=True)
class Adapter:
    """A named LoRA module: a PEFT adapter folder trained on one base model.

    Args:
        name: the name the server serves it under and requests ask for (letters, digits, ``_.-``).
        path: the PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``).
        base: the base model it was trained on (a hub id or a local folder).

    Raises:
        ConfigError: a bad name or an empty base.
    """

    name: str
    path: Path
    base: str

    def __post_init__(self) -> None:
        _check_name(self.name)
        object.__setattr__(self, "path", Path(self.path).expanduser())
        if not str(self.base).strip():
            raise ConfigError(f"adapter {self.name!r}: base must name the base model it was trained on")
        object.__setattr__(self, "base", str(self.base))

    @classmethod
    def from_peft(cls, name: str, path: str | Path, base: str | None = None) -> Adapter:
        """An adapter from a PEFT folder, its base read from ``adapter_config.json`` unless ``base`` is given.

        Raises:
            ConfigError: the folder or its ``adapter_config.json`` is missing or unreadable, or names no base.
        """
        folder = Path(path).expanduser()
        config = read_peft_config(folder)
        found = base or config.get("base_model_name_or_path")
        if not isinstance(found, str) or not found:
            raise ConfigError(f"adapter {name!r}: {folder}/adapter_config.json names no base_model_name_or_path")
        return cls(name, folder, found)

    @property
    def rank(self) -> int | None:
        """The LoRA rank ``r`` from ``adapter_config.json``, or None when the folder cannot tell."""
        try:
            r = read_peft_config(self.path).get("r")
        except ConfigError:
            return None
        return r if isinstance(r, int) else None

    def check(self) -> Adapter:
        """Check the folder holds a PEFT adapter; return self.

        Raises:
            ConfigError: the folder or its ``adapter_config.json`` is missing or unreadable.
        """
        read_peft_config(self.path)
        return self


def read_peft_config(folder: Path) -> dict[str, object]:
    """The parsed ``adapter_config.json`` of a PEFT adapter folder.

    Raises:
        ConfigError: the folder or file is missing or is not a JSON object.
    """
    file = folder / "adapter_config.json"
    if not folder.is_dir():
        raise ConfigError(f"adapter folder {folder} does not exist")
    try:
        data = loads_json(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder} is not a PEFT adapter: it has no adapter_config.json") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {file}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file} is not a JSON object")
    return data


class AdapterRegistry:
    """The adapters one base model serves, and which adapter each pipeline role uses.

    Args:
        base: the base model every adapter must have been trained on.
        adapters: adapters to register now.
        roles: role -> adapter name (a role not listed uses the base model).
        aliases: other names of the base (e.g. its hub id when it is served from a converted folder).

    Raises:
        ConfigError: an adapter for another base, a duplicate name, or a role naming an unknown adapter.
    """

    def __init__(
        self,
        base: str | Path,
        adapters: Iterable[Adapter] = (),
        *,
        roles: Mapping[str, str] | None = None,
        aliases: Iterable[str] = (),
    ) -> None:
        self.base = str(base)
        self.aliases = tuple(aliases)
        self._adapters: dict[str, Adapter] = {}
        self._roles: dict[str, str] = {}
        for adapter in adapters:
            self.add(adapter)
        for role, name in (roles or {}).items():
            self.assign(role, name)

    def validate(self, adapter: Adapter) -> Adapter:
        """Check ``adapter`` was trained on this registry's base; return it.

        Raises:
            ConfigError: its base is another model.
        """
        if not same_base(adapter.base, self.base, aliases=self.aliases):
            raise ConfigError(
                f"adapter {adapter.name!r} ({adapter.path}) was trained on {adapter.base!r}, but this server's base "
                f"model is {self.base!r}: serve it on a server of its own base, or retrain it on {self.base!r}"
            )
        return adapter

    def add(self, adapter: Adapter) -> None:
        """Register ``adapter`` under its name.

        Raises:
            ConfigError: another base model, or the name is already taken by a different adapter.
        """
        self.validate(adapter)
        old = self._adapters.get(adapter.name)
        if old is not None and old != adapter:
            raise ConfigError(f"adapter name {adapter.name!r} is already used by {old.path}; remove it first")
        self._adapters[adapter.name] = adapter

    def remove(self, name: str) -> Adapter:
        """Unregister the adapter ``name`` (roles using it fall back to the base model) and return it.

        Raises:
            ConfigError: no adapter of that name.
        """
        adapter = self[name]
        del self._adapters[name]
        self._roles = {role: a for role, a in self._roles.items() if a != name}
        return adapter

    def assign(self, role: str, name: str | None) -> None:
        """Make ``role`` use adapter ``name`` (None: the base model).

        Raises:
            ConfigError: a bad role name, or no adapter of that name.
        """
        _check_name(role, "role name")
        if name is None:
            self._roles.pop(role, None)
            return
        _ = self[name]  # raises ConfigError for an unknown adapter
        self._roles[role] = name

    def for_role(self, role: str) -> str | None:
        """The adapter (served model name) ``role`` asks for, or None for the base model."""
        return self._roles.get(role)

    @property
    def roles(self) -> dict[str, str]:
        """A copy of the role -> adapter name map."""
        return dict(self._roles)

    def __getitem__(self, name: str) -> Adapter:
        try:
            return self._adapters[name]
        except KeyError:
            known = ", ".join(sorted(self._adapters)) or "none"
            raise ConfigError(f"no adapter named {name!r} (registered: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._adapters

    def __iter__(self) -> Iterator[Adapter]:
        return iter(list(self._adapters.values()))

    def __len__(self) -> int:
        return len(self._adapters)

    def __repr__(self) -> str:
        return f"AdapterRegistry(base={self.base!r}, adapters={sorted(self._adapters)}, roles={self._roles})"
