"""Worker tools in the OpenAI function format, and the built-ins: python, workspace files, shell.

A :class:`Tool` is a name, a description, a JSON-schema of its arguments and an async function of those
arguments that returns text for the model. Every file a built-in tool touches is resolved by a
:class:`Workspace`, which refuses paths outside its root (``..``, absolute paths, symlinks that lead out).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mdap.errors import ConfigError, ToolError

from . import _files
from ._pycode import explain_failure, runnable
from .sandbox import Limits, Sandbox, cut

__all__ = [
    "Limits",
    "Sandbox",
    "Tool",
    "Workspace",
    "builtin_tools",
    "file_tools",
    "python_tool",
    "shell_tool",
    "tool_failed",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")

ToolFn = Callable[[dict[str, Any]], Awaitable[str] | str]

SYNC_TOOL_TIMEOUT_S = 60.0
"""How long a synchronous tool function may run when its Tool sets no ``timeout_s``."""


@dataclass(frozen=True)
class Tool:
    """A function a worker may call.

    Args:
        name: the function name the model uses (letters, digits, '_', '-').
        description: what it does, for the model.
        parameters: JSON schema (``{"type": "object", "properties": ..., "required": [...]}``).
        fn: ``async fn(arguments) -> text`` or a plain ``fn(arguments) -> text``; raise
            :class:`~mdap.errors.ToolError` to refuse a call. A plain function runs in a thread of its own, so
            it never blocks the event loop and its timeout holds while it blocks.
        timeout_s: seconds one call may take before it fails with a ToolError (enforced on the awaiting side,
            sync or async); None = :data:`SYNC_TOOL_TIMEOUT_S` for a plain function and no limit of the Tool's
            own for an async one (which bounds itself, like the python and shell tools). A plain function that
            overruns cannot be stopped: it is left to finish in its (daemon) thread and its result is dropped.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    fn: ToolFn = field(repr=False)
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError(f"tool {self.name}: timeout_s must be > 0 (or None), got {self.timeout_s}")
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
        sync = not _is_async(self.fn)
        limit = self.timeout_s if self.timeout_s is not None else (SYNC_TOOL_TIMEOUT_S if sync else None)
        try:
            async with asyncio.timeout(limit):
                out = await _in_thread(self.fn, dict(arguments)) if sync else self.fn(dict(arguments))
                while inspect.isawaitable(out):  # a plain callable that returned a coroutine
                    out = await out
        except TimeoutError:
            kind = "synchronous " if sync else ""
            return f"error: {ToolError(f'tool {self.name} ({kind}function) timed out after {limit:g}s')}"
        except ToolError as err:
            return f"error: {err}"
        return out if isinstance(out, str) else str(out)


def _is_async(fn: object) -> bool:
    """Whether calling ``fn`` gives a coroutine (async functions, partials of them, objects with async __call__)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


async def _in_thread(fn: ToolFn, arguments: dict[str, Any]) -> Awaitable[str] | str:
    """Call ``fn`` in a daemon thread and await its result; cancelling the await abandons the thread.

    Not the loop's default executor: ``asyncio.run`` joins that at exit, so a function that never returns would
    hang the program.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Awaitable[str] | str] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return  # the caller gave up (timeout, cancellation)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def work() -> None:
        try:
            value = fn(arguments)
        except BaseException as err:  # handed to the awaiting side, which re-raises it
            error: BaseException | None = err
            value = None
        else:
            error = None
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=work, name=f"mdap-tool-{getattr(fn, '__name__', 'fn')}", daemon=True).start()
    return await future


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

    def parts(self, relative: str) -> tuple[str, ...]:
        """The components of ``relative`` below the root (``()`` = the root), lexically normalized.

        Raises:
            ToolError: the path is empty, contains a NUL, or leads outside the root (``..`` above it, an
                absolute path elsewhere).
        """
        return _files.split(self.root, relative)

    def resolve(self, relative: str) -> Path:
        """The absolute path of ``relative`` inside the workspace, through no symlink.

        The file tools do not use this path (a symlink could be planted after the check): they open files
        component by component with ``O_NOFOLLOW`` (:mod:`._files`).

        Raises:
            ToolError: the path is empty, contains a NUL, leads outside the root (``..``, an absolute path
                elsewhere), or a component of it is a symlink.
        """
        parts = self.parts(relative)
        for i in range(len(parts)):
            if (self.root.joinpath(*parts[: i + 1])).is_symlink():
                raise _files.symlink_refused("/".join(parts[: i + 1]))
        return self.root.joinpath(*parts)

    def show(self, path: Path) -> str:
        """``path`` relative to the root, for messages."""
        return str(path.relative_to(self.root)) if path != self.root else "."


_NOT_SEARCHED = frozenset({".git"})


def _schema(required: list[str], **props: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": kind} for name, kind in props.items()},
        "required": required,
    }


def file_tools(
    workspace: Workspace,
    *,
    max_chars: int = 8000,
    max_hits: int = 50,
    max_files: int = 5000,
    max_file_bytes: int = 1 << 20,
    max_bytes: int = 64 << 20,
) -> list[Tool]:
    """``read_file``, ``write_file``, ``list_files`` and ``search_files``, confined to ``workspace``.

    They follow no symlink (a path through one is refused; listings show symlinks with a trailing ``@``) and
    neither read nor write a hardlinked file (see :mod:`._files`). ``search_files`` takes globs relative to
    the workspace only (no absolute glob, no ``..``), skips ``.git``, and reads at most ``max_files`` files,
    ``max_file_bytes`` of each and ``max_bytes`` in all.
    """

    def read_file(args: dict[str, Any]) -> str:
        return _files.read_text(workspace.root, workspace.parts(str(args["path"])), max_chars)

    def write_file(args: dict[str, Any]) -> str:
        parts = workspace.parts(str(args["path"]))
        if not parts:
            raise ToolError(f"{args['path']!r} is a directory")
        content = str(args["content"])
        _files.write_text(workspace.root, parts, content)
        return f"wrote {len(content)} characters to {'/'.join(parts)}"

    def list_files(args: dict[str, Any]) -> str:
        names, stopped = _files.list_dir(
            workspace.root, workspace.parts(str(args.get("path") or ".")), max_entries=max_files
        )
        shown = names[: max_hits * 4]
        more = len(names) - len(shown)
        note = f"\n...({more}{'+' if stopped else ''} more entries)" if more or stopped else ""
        return "\n".join(shown) + note if names else "(empty)"

    def search_files(args: dict[str, Any]) -> str:
        try:
            pattern = re.compile(str(args["pattern"]))
        except re.error as err:
            raise ToolError(f"bad regular expression: {err}") from None
        glob = str(args.get("glob") or "*")
        if "\x00" in glob or glob.startswith("/") or ".." in PurePosixPath(glob).parts:
            raise ToolError(
                f"refused: the glob {glob!r} is absolute or climbs out with '..'; use a glob inside the "
                "workspace such as '*.py' or 'src/*.py'"
            )
        while glob.startswith("**/"):  # '**/x' = 'x' at any depth, as every glob here is
            glob = glob[3:]
        walk = contextlib.closing(_files.walk_files(workspace.root, max_entries=max_files * 20, skip=_NOT_SEARCHED))
        with walk as found:
            return _search(found, pattern, glob)

    def _search(found: Iterator[tuple[str, int, str]], pattern: re.Pattern[str], glob: str) -> str:
        hits: list[str] = []
        files = read = 0
        note = ""
        for rel, dir_fd, name in found:
            if dir_fd < 0:
                note = f"...(stopped after {max_files * 20} folder entries; narrow the glob)"
                break
            if not PurePosixPath(rel).match(glob):
                continue
            if files >= max_files or read >= max_bytes:
                note = f"...(stopped after scanning {files} files; narrow the glob)"
                break
            data = _files.read_at(dir_fd, name, min(max_file_bytes, max_bytes - read))
            if data is None:
                continue  # not a regular, singly linked file: not searched
            files += 1
            read += len(data)
            for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{rel}:{number}: {line[:200]}")
                    if len(hits) >= max_hits:
                        return "\n".join(hits) + f"\n...(stopped at {max_hits} hits)"
        text = "\n".join(hits) or "no matches"
        return f"{text}\n{note}" if note else text

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


_PY_BOOT = """\
import ast, linecache, sys, traceback
src = sys.stdin.read()
linecache.cache['<tool>'] = (len(src), None, src.splitlines(True), '<tool>')
env = {'__name__': '__main__'}
try:
    tree = ast.parse(src, '<tool>')
except SyntaxError as exc:
    traceback.print_exception(type(exc), exc, None)
    sys.exit(1)
try:
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, '<tool>', 'exec'), env)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), '<tool>', 'eval'), env)
        if value is not None:
            print(repr(value))
except SystemExit:
    raise
except BaseException as exc:
    sys.stdout.flush()
    traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
    sys.exit(1)
"""
"""Runs the program read from stdin as a script whose last expression, if any, is shown as the REPL shows it
(``x = 2`` then ``x * 21`` prints 42; ``print(x)`` prints x once). A failure prints the traceback of the
program's own lines only, with those lines shown."""

NO_OUTPUT = "(the program printed nothing: print the result you need)"
"""The python tool's reply to a program that ran and printed nothing."""


_EXIT_FAILED = re.compile(r"^exit code [1-9]")


def tool_failed(output: str) -> bool:
    """Whether a tool's output reports that the call got nothing to go on: a refused or failed call (``error:
    ...``, as :meth:`Tool.call` writes a :class:`ToolError`), a program that exited non-zero (``exit code N``),
    or a python program that printed nothing (:data:`NO_OUTPUT`)."""
    return output.startswith(("error:", NO_OUTPUT)) or _EXIT_FAILED.match(output) is not None


def _sandbox_of(sandbox: Sandbox | None) -> Sandbox:
    """``sandbox``, or the process default at call time (bubblewrap unless the CLI's ``--sandbox`` said otherwise)."""
    return sandbox if sandbox is not None else Sandbox.default()


def _shown(done_output: str, timed_out: bool, limits: Limits, process_limit_hit: bool) -> str:
    if timed_out:
        raise ToolError(
            f"timed out after {limits.timeout_s:g}s and was killed (with every process it started); "
            "make the work smaller"
        )
    text = cut(done_output, limits.max_output_chars)
    if process_limit_hit:
        text += f"\n[the sandbox refused a fork: at most {limits.max_processes} processes at once]"
    return text


def python_tool(workspace: Workspace, limits: Limits | None = None, *, sandbox: Sandbox | None = None) -> Tool:
    """``python``: run code as a script and return its output; a last expression's value is shown as the REPL shows
    it, and a program that prints nothing gets :data:`NO_OUTPUT`.

    Math signs a model writes in code (multiplication, division, minus signs, ...) become Python operators outside
    string literals; a program that still fails on a character Python does not take gets a hint in its output.
    Tool-call debris at the end of the code (``print(x)}``) is left out when the code parses only without it, and
    the output says so (see :func:`~._pycode.runnable`).

    The code runs in a fresh ``python -I`` process in the workspace, inside ``sandbox`` (default: bubblewrap,
    see :class:`Sandbox`; None: :meth:`Sandbox.default` at call time), under ``limits`` (default: the
    sandbox's, 10 s wall, 10 s CPU, 1 GiB memory, 64 processes).
    """

    async def run(args: dict[str, Any]) -> str:
        box = _sandbox_of(sandbox)
        lim = limits or box.limits
        code, cut_off = runnable(str(args["code"]))
        done = await box.run([sys.executable, "-I", "-c", _PY_BOOT], cwd=workspace.root, limits=lim, stdin=code)
        out = _shown(done.output, done.timed_out, lim, done.process_limit_hit)
        if done.code == 0 and not out.strip():
            out = NO_OUTPUT + "\n"
        note = f"[left out the end of the code that is not Python: {cut_off[:40]!r}]\n" if cut_off else ""
        if done.code == 0:
            return out + note
        return f"exit code {done.code}\n{out}{explain_failure(out)}\n{note}".rstrip("\n") + "\n"

    return Tool(
        "python",
        "Run Python code or evaluate an expression in a fresh process; returns its output or the value.",
        _schema(["code"], code="string"),
        run,
    )


def shell_tool(workspace: Workspace, limits: Limits | None = None, *, sandbox: Sandbox | None = None) -> Tool:
    """``shell``: run a ``/bin/sh`` command in the workspace, inside ``sandbox`` (default: bubblewrap)."""

    async def run(args: dict[str, Any]) -> str:
        box = _sandbox_of(sandbox)
        lim = limits or box.limits
        done = await box.run(["/bin/sh", "-c", str(args["command"])], cwd=workspace.root, limits=lim)
        return f"exit code {done.code}\n{_shown(done.output, done.timed_out, lim, done.process_limit_hit)}"

    return Tool(
        "shell",
        "Run a shell command in the workspace directory; returns its exit code and output.",
        _schema(["command"], command="string"),
        run,
    )


def builtin_tools(
    workspace: str | Path | Workspace, limits: Limits | None = None, *, sandbox: Sandbox | None = None
) -> list[Tool]:
    """Every built-in tool on one workspace: python, shell (both in ``sandbox``) and the four file tools."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    return [python_tool(ws, limits, sandbox=sandbox), shell_tool(ws, limits, sandbox=sandbox), *file_tools(ws)]
