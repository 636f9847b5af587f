"""Worker tools in the OpenAI function format, and the built-ins: python, workspace files, shell.

A :class:`Tool` is a name, a description, a JSON-schema of its arguments and an async function of those
arguments that returns text for the model. Every file a built-in tool touches is resolved by a
:class:`Workspace`, which refuses paths outside its root (``..``, absolute paths, symlinks that lead out).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdap.errors import ConfigError, ToolError

from ._sandbox import Limits, cut, run_limited

__all__ = [
    "Limits",
    "Tool",
    "Workspace",
    "builtin_tools",
    "file_tools",
    "python_tool",
    "shell_tool",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")

ToolFn = Callable[[dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True)
class Tool:
    """A function a worker may call.

    Args:
        name: the function name the model uses (letters, digits, '_', '-').
        description: what it does, for the model.
        parameters: JSON schema (``{"type": "object", "properties": ..., "required": [...]}``).
        fn: ``async fn(arguments) -> text``; raise :class:`~mdap.errors.ToolError` to refuse a call.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    fn: ToolFn = field(repr=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"tool name {self.name!r} must be letters, digits, '_' or '-' (at most 64)")
        if self.parameters.get("type") != "object":
            raise ConfigError(f"tool {self.name}: parameters must be a JSON schema with type 'object'")

    def spec(self) -> dict[str, Any]:
        """The tool in the OpenAI ``tools`` format."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": dict(self.parameters)},
        }

    async def call(self, arguments: Mapping[str, Any]) -> str:
        """Call the tool; a refused or failed call comes back as ``error: ...`` text for the model."""
        missing = [p for p in self.parameters.get("required", []) if p not in arguments]
        if missing:
            return f"error: missing arguments: {', '.join(missing)}"
        try:
            return await self.fn(dict(arguments))
        except ToolError as err:
            return f"error: {err}"


class Workspace:
    """A directory the file and shell tools are confined to.

    Args:
        root: the directory (created if missing).

    Raises:
        ConfigError: ``root`` exists and is not a directory.
    """

    def __init__(self, root: str | Path) -> None:
        path = Path(root)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"workspace {path} is not a directory")
        path.mkdir(parents=True, exist_ok=True)
        self.root = path.resolve()

    def resolve(self, relative: str) -> Path:
        """The absolute path of ``relative`` inside the workspace.

        Raises:
            ToolError: the path is empty, contains a NUL, or leads outside the root (``..``, an absolute path
                elsewhere, or a symlink that points out).
        """
        if not relative or "\x00" in relative:
            raise ToolError("the path is empty or contains a NUL byte")
        target = (self.root / relative).resolve()
        if target != self.root and not target.is_relative_to(self.root):
            raise ToolError(f"refused: {relative!r} is outside the workspace; use a path relative to it")
        return target

    def show(self, path: Path) -> str:
        """``path`` relative to the root, for messages."""
        return str(path.relative_to(self.root)) if path != self.root else "."


def _schema(required: list[str], **props: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": kind} for name, kind in props.items()},
        "required": required,
    }


def file_tools(workspace: Workspace, *, max_chars: int = 8000, max_hits: int = 50) -> list[Tool]:
    """``read_file``, ``write_file``, ``list_files`` and ``search_files``, confined to ``workspace``."""

    async def read_file(args: dict[str, Any]) -> str:
        path = workspace.resolve(str(args["path"]))
        if not path.is_file():
            raise ToolError(f"no file {args['path']!r} in the workspace")
        return cut(path.read_text(errors="replace"), max_chars)

    async def write_file(args: dict[str, Any]) -> str:
        path = workspace.resolve(str(args["path"]))
        if path == workspace.root or path.is_dir():
            raise ToolError(f"{args['path']!r} is a directory")
        content = str(args["content"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return f"wrote {len(content)} characters to {workspace.show(path)}"

    async def list_files(args: dict[str, Any]) -> str:
        base = workspace.resolve(str(args.get("path") or "."))
        if not base.is_dir():
            raise ToolError(f"no directory {args.get('path')!r} in the workspace")
        names = sorted(workspace.show(p) + ("/" if p.is_dir() else "") for p in base.iterdir())
        return "\n".join(names[: max_hits * 4]) or "(empty)"

    async def search_files(args: dict[str, Any]) -> str:
        try:
            pattern = re.compile(str(args["pattern"]))
        except re.error as err:
            raise ToolError(f"bad regular expression: {err}") from err
        hits: list[str] = []
        for path in sorted(workspace.root.rglob(str(args.get("glob") or "*"))):
            if not path.is_file() or path.is_symlink():
                continue
            try:
                lines = path.read_text(errors="replace").splitlines()
            except OSError:
                continue  # unreadable files are simply not searched
            for number, line in enumerate(lines, 1):
                if pattern.search(line):
                    hits.append(f"{workspace.show(path)}:{number}: {line[:200]}")
                    if len(hits) >= max_hits:
                        return "\n".join(hits) + f"\n...(stopped at {max_hits} hits)"
        return "\n".join(hits) or "no matches"

    return [
        Tool("read_file", "Read a text file of the workspace.", _schema(["path"], path="string"), read_file),
        Tool(
            "write_file",
            "Write (replace) a text file in the workspace; directories are created.",
            _schema(["path", "content"], path="string", content="string"),
            write_file,
        ),
        Tool("list_files", "List a workspace directory ('.' = the root).", _schema([], path="string"), list_files),
        Tool(
            "search_files",
            "Search workspace files for a regular expression; optional glob such as '*.py'.",
            _schema(["pattern"], pattern="string", glob="string"),
            search_files,
        ),
    ]


_PY_BOOT = (
    "import sys\n"
    "src = sys.stdin.read()\n"
    "try:\n"
    "    code = compile(src, '<tool>', 'eval')\n"
    "except SyntaxError:\n"
    "    exec(compile(src, '<tool>', 'exec'), {'__name__': '__main__'})\n"
    "else:\n"
    "    print(repr(eval(code, {'__name__': '__main__'})))\n"
)


def python_tool(workspace: Workspace, limits: Limits | None = None) -> Tool:
    """``python``: evaluate an expression (its repr is returned) or run code (its output is returned).

    The code runs in a fresh ``python -I`` subprocess in the workspace, with the limits given (default
    :class:`Limits`: 10 s wall, 10 s CPU, 1 GiB memory) and an environment without the parent's variables.
    """
    lim = limits or Limits()

    async def run(args: dict[str, Any]) -> str:
        code, out = await run_limited(
            [sys.executable, "-I", "-c", _PY_BOOT], cwd=workspace.root, limits=lim, stdin=str(args["code"])
        )
        return out if code == 0 else f"exit code {code}\n{out}"

    return Tool(
        "python",
        "Run Python code or evaluate an expression in a fresh process; returns its output or the value.",
        _schema(["code"], code="string"),
        run,
    )


def shell_tool(workspace: Workspace, limits: Limits | None = None) -> Tool:
    """``shell``: run a ``/bin/sh`` command in the workspace with a timeout and resource limits."""
    lim = limits or Limits()
    shell = "/bin/sh" if os.path.exists("/bin/sh") else "sh"

    async def run(args: dict[str, Any]) -> str:
        code, out = await run_limited([shell, "-c", str(args["command"])], cwd=workspace.root, limits=lim)
        return f"exit code {code}\n{out}"

    return Tool(
        "shell",
        "Run a shell command in the workspace directory; returns its exit code and output.",
        _schema(["command"], command="string"),
        run,
    )


def builtin_tools(workspace: str | Path | Workspace, limits: Limits | None = None) -> list[Tool]:
    """Every built-in tool on one workspace: python, shell and the four file tools."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    return [python_tool(ws, limits), shell_tool(ws, limits), *file_tools(ws)]
