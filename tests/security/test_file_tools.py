"""The workspace file tools: no hardlink written through, no glob or symlink that leads outside, bounded scans."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mdap.agents import Tool, Workspace, file_tools
from mdap.errors import ToolError


def _tools(ws: Workspace, **kw: int) -> dict[str, Tool]:
    return {t.name: t for t in file_tools(ws, **kw)}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the workspace, with a secret file and a secret folder."""
    out = tmp_path / "outside"
    (out / "dir").mkdir(parents=True)
    (out / "secret.txt").write_text("top secret\n")
    (out / "dir" / "inner.txt").write_text("inner secret\n")
    return out


async def test_write_file_does_not_write_through_a_hardlink(tmp_path: Path, outside: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    os.link(outside / "secret.txt", ws.root / "linked.txt")
    tools = _tools(ws)
    wrote = await tools["write_file"].call({"path": "linked.txt", "content": "pwned"})
    assert wrote.startswith("error: refused: 'linked.txt' is hardlinked")
    assert (outside / "secret.txt").read_text() == "top secret\n"
    read = await tools["read_file"].call({"path": "linked.txt"})
    assert read.startswith("error: refused: 'linked.txt' is hardlinked")
    assert "top secret" not in read


async def test_search_files_refuses_absolute_and_parent_globs(tmp_path: Path, outside: Path) -> None:
    ws = Workspace(tmp_path / "a" / "b" / "ws")
    (ws.root / "note.txt").write_text("secret in the workspace is fine\n")
    search = _tools(ws)["search_files"]
    for glob in ["../../../outside/secret.txt", str(outside / "secret.txt"), "d/../../outside/*.txt", "/*"]:
        got = await search.call({"pattern": "secret", "glob": glob})
        assert got.startswith("error: refused: the glob"), (glob, got)
        assert "top secret" not in got
    assert await search.call({"pattern": "secret", "glob": "*.txt"}) == "note.txt:1: secret in the workspace is fine"


@pytest.mark.parametrize("path", ["inside/ok.txt", "dirlink/inner.txt", "dirlink/new.txt", "filelink"])
async def test_no_file_tool_follows_a_symlink_in_a_path(tmp_path: Path, outside: Path, path: str) -> None:
    ws = Workspace(tmp_path / "ws")
    (ws.root / "real").mkdir()
    (ws.root / "real" / "ok.txt").write_text("fine\n")
    os.symlink(ws.root / "real", ws.root / "inside")  # even a symlink that stays inside is not followed
    os.symlink(outside / "dir", ws.root / "dirlink")
    os.symlink(outside / "secret.txt", ws.root / "filelink")
    tools = _tools(ws)
    first = path.split("/", 1)[0]
    read = await tools["read_file"].call({"path": path})
    assert read.startswith(f"error: refused: {first!r} is a symlink"), read
    wrote = await tools["write_file"].call({"path": path, "content": "pwned"})
    assert wrote.startswith(f"error: refused: {first!r} is a symlink"), wrote
    listed = await tools["list_files"].call({"path": first})
    assert listed.startswith(f"error: refused: {first!r} is a symlink"), listed
    with pytest.raises(ToolError, match="is a symlink"):
        ws.resolve(path)
    assert (outside / "secret.txt").read_text() == "top secret\n"
    assert sorted(p.name for p in (outside / "dir").iterdir()) == ["inner.txt"]
    assert (outside / "dir" / "inner.txt").read_text() == "inner secret\n"
    assert (ws.root / "real" / "ok.txt").read_text() == "fine\n"


async def test_search_and_list_do_not_follow_symlinked_folders(tmp_path: Path, outside: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    (ws.root / "mine.txt").write_text("my secret\n")
    os.symlink(outside / "dir", ws.root / "dirlink")
    os.symlink(outside / "secret.txt", ws.root / "filelink")
    os.link(outside / "secret.txt", ws.root / "hard.txt")
    tools = _tools(ws)
    assert await tools["search_files"].call({"pattern": "secret"}) == "mine.txt:1: my secret"
    assert await tools["search_files"].call({"pattern": "secret", "glob": "dirlink/*"}) == "no matches"
    assert await tools["list_files"].call({}) == "dirlink@\nfilelink@\nhard.txt\nmine.txt"


async def test_search_files_caps_the_files_and_bytes_it_reads(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    for i in range(30):
        (ws.root / f"f{i:02d}.txt").write_text("needle\n")
    search = _tools(ws, max_files=10)["search_files"]
    got = (await search.call({"pattern": "needle"})).splitlines()
    assert got[:10] == [f"f{i:02d}.txt:1: needle" for i in range(10)]
    assert got[10:] == ["...(stopped after scanning 10 files; narrow the glob)"]
    (ws.root / "big.log").write_text("x\n" * 1000 + "needle\n")
    capped = _tools(ws, max_file_bytes=1000)["search_files"]
    assert await capped.call({"pattern": "needle", "glob": "*.log"}) == "no matches"
    read = await _tools(ws, max_chars=10)["read_file"].call({"path": "big.log"})
    assert read.startswith("x\nx\nx\nx\nx\n") and "cut" in read


async def test_file_tools_still_work_in_nested_folders(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    tools = _tools(ws)
    assert await tools["write_file"].call({"path": "a/b/c.txt", "content": "one"}) == "wrote 3 characters to a/b/c.txt"
    assert await tools["write_file"].call({"path": "a/b/c.txt", "content": "two"}) == "wrote 3 characters to a/b/c.txt"
    assert await tools["read_file"].call({"path": "a/./b/../b/c.txt"}) == "two"
    assert await tools["read_file"].call({"path": str(ws.root / "a" / "b" / "c.txt")}) == "two"
    assert await tools["list_files"].call({"path": "a"}) == "a/b/"
    assert await tools["search_files"].call({"pattern": "tw", "glob": "b/*.txt"}) == "a/b/c.txt:1: two"
    assert (await tools["write_file"].call({"path": "a", "content": "x"})) == "error: 'a' is a directory"
    os.mkfifo(ws.root / "fifo")
    assert (await tools["read_file"].call({"path": "fifo"})).startswith("error: refused: 'fifo' is not a regular file")


async def test_recursive_globs_and_long_listings(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    (ws.root / "d").mkdir()
    (ws.root / "top.py").write_text("x = 1\n")
    (ws.root / "d" / "deep.py").write_text("x = 2\n")
    tools = _tools(ws, max_hits=3)
    assert (
        await tools["search_files"].call({"pattern": "x", "glob": "**/*.py"}) == "d/deep.py:1: x = 2\ntop.py:1: x = 1"
    )
    for i in range(12):
        (ws.root / f"f{i:02d}").write_text("")
    listed = (await tools["list_files"].call({})).splitlines()
    assert listed == ["d/", *(f"f{i:02d}" for i in range(11)), "...(2 more entries)"]
