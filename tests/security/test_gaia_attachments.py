"""GAIA metadata cannot make mdap read or write outside the dataset folder: attachments are checked."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from mdap.errors import ConfigError
from mdap.evals.gaia import gaia_pipeline, load_gaia
from mdap.models import SimulatedModel

GOOD = {"task_id": "t-7", "Question": "What is in the file?", "Level": 1, "Final answer": "4", "file_name": ""}


def _split(root: Path, file_name: str) -> Path:
    folder = root / "data" / "2023" / "validation"
    folder.mkdir(parents=True)
    (folder / "metadata.jsonl").write_text(json.dumps({**GOOD, "file_name": file_name}) + "\n")
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret.txt").write_text("top secret\n")
    return out


def test_an_attachment_symlinked_out_of_the_folder_is_refused(tmp_path: Path, outside: Path) -> None:
    folder = _split(tmp_path, "leak.txt")
    os.symlink(outside / "secret.txt", folder / "leak.txt")
    with pytest.raises(
        ConfigError,
        match=r"field 'file_name': the attachment .*leak.txt leads outside the dataset folder .*\(task 't-7'\)",
    ) as err:
        load_gaia(tmp_path / "data")
    assert str(folder / "metadata.jsonl") in str(err.value)


def test_an_attachment_under_a_symlinked_folder_is_refused(tmp_path: Path, outside: Path) -> None:
    folder = _split(tmp_path, "sub/secret.txt")
    os.symlink(outside, folder / "sub")
    with pytest.raises(
        ConfigError, match=r"field 'file_name': the attachment .*sub/secret.txt leads outside .*\(task 't-7'\)"
    ):
        load_gaia(tmp_path / "data")


@pytest.mark.parametrize("name", ["../../../outside/secret.txt", "ABS"])
def test_absolute_and_parent_file_names_name_the_task(tmp_path: Path, outside: Path, name: str) -> None:
    name = str(outside / "secret.txt") if name == "ABS" else name
    _split(tmp_path, name)
    with pytest.raises(
        ConfigError, match=rf"field 'file_name': {re.escape(repr(name))} must be a file name inside .* \(task 't-7'\)"
    ):
        load_gaia(tmp_path / "data")


def test_a_symlink_inside_the_folder_that_stays_inside_is_fine(tmp_path: Path) -> None:
    folder = _split(tmp_path, "alias.txt")
    (folder / "real.txt").write_text("4\n")
    os.symlink(folder / "real.txt", folder / "alias.txt")
    (q,) = load_gaia(tmp_path / "data")
    assert q.attachment == folder / "alias.txt"


def test_the_attachment_copy_does_not_write_through_a_symlink_in_the_workspace(tmp_path: Path, outside: Path) -> None:
    folder = _split(tmp_path, "data.txt")
    (folder / "data.txt").write_text("2 + 2\n")
    (q,) = load_gaia(tmp_path / "data")
    ws = tmp_path / "ws"
    ws.mkdir()
    os.symlink(outside / "secret.txt", ws / "data.txt")  # left by an earlier run's python tool, say
    gaia_pipeline(SimulatedModel(lambda messages: "4"), q, ws, planner="fixed")
    assert (outside / "secret.txt").read_text() == "top secret\n"
    assert not (ws / "data.txt").is_symlink() and (ws / "data.txt").read_text() == "2 + 2\n"


async def test_read_attachment_does_not_follow_a_symlink_put_in_its_place(tmp_path: Path, outside: Path) -> None:
    from mdap.evals.gaia.tools import attachment_tool

    copy = tmp_path / "ws" / "data.txt"
    copy.parent.mkdir()
    os.symlink(outside / "secret.txt", copy)  # the python tool replaced the copy with a link
    got = await attachment_tool(copy).call({})
    assert got.startswith("error: refused: data.txt is a symlink") and "top secret" not in got
    copy.unlink()
    os.link(outside / "secret.txt", copy)
    got = await attachment_tool(copy).call({})
    assert got.startswith("error: refused: data.txt is hardlinked") and "top secret" not in got
    copy.unlink()
    copy.write_text("2 + 2\n")
    assert await attachment_tool(copy).call({}) == "data.txt:\n2 + 2\n"
