"""The public API is what the modules say it is, and `import mdap` stays light.

Derived from the modules, not a hand-copied list: every public module's ``__all__`` lists exactly the public
classes and functions it defines (plus what it re-exports), resolves, and a package re-exports only names its
modules export. ``mdap.__all__`` is its eager names plus the lazy re-exports.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

import mdap

ROOT = Path(__file__).resolve().parents[2]


def _packages() -> list[str]:
    """The packages the build installs (pyproject.toml), so a new subpackage is checked without editing this test."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return sorted(config["tool"]["setuptools"]["packages"])


def _public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def _modules() -> list[str]:
    """Every public module and package of mdap."""
    names: set[str] = set()
    for package in filter(_public, _packages()):
        names.add(package)
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__, f"{package}."):
            if not info.ispkg and _public(info.name):
                names.add(info.name)
    return sorted(names)


def _defined_here(module: ModuleType) -> set[str]:
    """The public classes and functions a module defines itself (not those it imports)."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    }


@pytest.mark.parametrize("name", _modules())
def test_all_lists_what_a_module_defines_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    defined = _defined_here(module)
    if exported is None:
        assert not defined, f"{name} defines {sorted(defined)} but has no __all__"
        return
    assert len(set(exported)) == len(exported), f"{name}.__all__ lists a name twice"
    unresolved = [n for n in exported if not hasattr(module, n)]
    assert not unresolved, f"{name}.__all__ names what it lacks: {unresolved}"
    unlisted = sorted(defined - set(exported))
    assert not unlisted, f"{name} defines public {unlisted} outside __all__: list them, or make them private (_name)"


@pytest.mark.parametrize("name", [p for p in _packages() if _public(p) and p != "mdap"])
def test_a_package_re_exports_only_what_its_modules_export(name: str) -> None:
    package = importlib.import_module(name)
    for attr in getattr(package, "__all__", []):
        value = getattr(package, attr)
        home = getattr(value, "__module__", None)
        if not (inspect.isclass(value) or inspect.isfunction(value)) or home is None or not home.startswith(name):
            continue
        if _public(home) and home != name:
            assert attr in importlib.import_module(home).__all__, f"{name} re-exports {attr}, which {home} keeps out"


def test_mdap_all_is_its_eager_names_and_lazy_re_exports() -> None:
    assert mdap.__all__ == sorted(mdap.__all__), "keep __all__ sorted"
    lazy: dict[str, str] = vars(mdap)["_LAZY"]
    eager = {
        n for n, v in vars(mdap).items() if not n.startswith("_") and n not in lazy and not inspect.ismodule(v)
    } - {"annotations", "TYPE_CHECKING", "Any"}
    assert set(mdap.__all__) == eager | set(lazy)
    for name, home in lazy.items():
        source = importlib.import_module(home)
        assert name in source.__all__, f"mdap.{name} comes from {home}, which does not export it"
        assert getattr(mdap, name) is getattr(source, name)


def test_every_error_derives_from_mdap_error() -> None:
    errors = [getattr(mdap, n) for n in mdap.__all__ if n.endswith(("Error", "Failed", "Flag"))]
    assert errors
    assert all(issubclass(e, mdap.MdapError) for e in errors)


HEAVY = ("vllm", "torch", "transformers", "peft", "matplotlib", "langgraph", "redis", "openai")

_PROBE = f"""
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {("vllm", "torch", "transformers", "peft", "matplotlib")!r}:
            raise ImportError(f"{{name}} is not installed (blocked by the test)")
        return None

sys.meta_path.insert(0, Block())
import asyncio
import mdap
from mdap.evals.hanoi import hanoi_chain, simulated_hanoi_model
report = asyncio.run(mdap.Executor(simulated_hanoi_model(), mdap.FirstToAheadByK(k=2)).run(hanoi_chain(4)))
assert report.ok, report
loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(",".join(loaded))
"""


def test_import_mdap_needs_no_extras_and_loads_nothing_heavy() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"import mdap loaded heavy modules: {out.stdout.strip()}"


def _public_classes() -> dict[str, set[str]]:
    """Every public class of mdap.* by name -> the modules that define one of that name (walking each ``__all__``)."""
    homes: dict[str, set[str]] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            value = getattr(module, attr)
            if inspect.isclass(value) and value.__module__.startswith("mdap"):
                homes.setdefault(value.__name__, set()).add(f"{value.__module__}.{value.__qualname__}")
    return homes


def test_no_two_public_classes_share_a_name() -> None:
    twins = {name: sorted(homes) for name, homes in _public_classes().items() if len(homes) > 1}
    assert not twins, f"public classes of one name in two places (rename one): {twins}"


def test_every_public_exception_derives_from_mdap_error() -> None:
    strays = sorted(
        f"{name}.{attr}"
        for name in _modules()
        for attr in getattr(importlib.import_module(name), "__all__", [])
        if inspect.isclass(value := getattr(importlib.import_module(name), attr))
        and issubclass(value, BaseException)
        and not issubclass(value, mdap.MdapError)
    )
    assert not strays, f"exceptions outside MdapError: {strays}"
