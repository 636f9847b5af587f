"""The shared argument types of mdap/_cli/_args.py: what each accepts and how it names what it refuses."""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

import pytest

from mdap._cli._args import (
    checkpoint_file,
    finite_float,
    input_dir,
    input_file,
    int_range,
    k_or_auto,
    nonneg_int,
    pipeline_target,
    port,
    positive_float,
    positive_int,
    probability,
)
from mdap.cli import main


def refused(parse: object, value: str) -> str:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(value)  # type: ignore[operator]
    return str(info.value)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e309", "abc", "", "0x10"])
def test_finite_float_refuses_what_is_not_a_finite_number(value: str) -> None:
    assert "finite number" in refused(finite_float(), value)


def test_finite_float_bounds_open_and_closed() -> None:
    assert probability("0") == 0.0 and probability("1") == 1.0 and probability("0.25") == 0.25
    assert ">= 0 and <= 1" in refused(probability, "1.5")
    assert positive_float("1e-9") == 1e-9
    assert "> 0" in refused(positive_float, "0")
    between = finite_float(0.0, 1.0, low_open=True, high_open=True)
    assert "> 0 and < 1" in refused(between, "1")
    assert between("0.95") == 0.95


def test_integers_and_ports() -> None:
    assert positive_int("7") == 7 and nonneg_int("0") == 0 and int_range(2)("2") == 2
    assert "an integer >= 1, got 0" in refused(positive_int, "0")
    assert "got '1.5'" in refused(positive_int, "1.5")
    assert "got '1e309'" in refused(positive_int, "1e309")
    assert ">= 2" in refused(int_range(2), "1")
    assert port("65535") == 65535
    assert "<= 65535" in refused(port, "65536") and ">= 1" in refused(port, "0")
    assert k_or_auto("auto") == "auto" and k_or_auto("3") == 3
    assert ">= 1" in refused(k_or_auto, "0")


def test_the_types_say_what_they_take() -> None:
    assert positive_int.numeric and probability.numeric and k_or_auto.numeric
    assert input_file().path_kind == "input_file" and input_dir().path_kind == "input_dir"
    assert checkpoint_file.path_kind == "input_file" and pipeline_target.path_kind == "input_file"


def test_input_file_checks_it_is_a_readable_utf8_text_file(tmp_path: Path) -> None:
    text = tmp_path / "ok.json"
    text.write_text('{"a": "h\u00e9"}\n', encoding="utf-8")
    assert input_file()(str(text)) == text
    assert input_file()("/proc/version") == Path("/proc/version")  # a text file that stat says is empty
    assert f"{tmp_path}: is a directory, not a file" in refused(input_file(), str(tmp_path))
    nul = tmp_path / "nul.jsonl"
    nul.write_bytes(b'{"a": 1}\n\x00\x01')
    assert "binary file (a NUL byte)" in refused(input_file(), str(nul))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b"{}\n" * 30_000 + b'{"a": "caf\xe9"}\n')  # the bad byte lies past the first read
    assert "is not UTF-8 text (byte 90010" in refused(input_file(), str(latin))
    cut = tmp_path / "cut.txt"
    cut.write_bytes("h\u00e9".encode()[:-1])
    assert "ends inside a character" in refused(input_file(), str(cut))
    missing = tmp_path / "no" / "such" / "file.json"
    assert f"no such file (directory {tmp_path / 'no'} does not exist)" in refused(input_file(), str(missing))
    assert "is not a regular file" in refused(input_file(), "/dev/null")


def test_a_binary_input_may_be_binary_but_must_be_a_file(tmp_path: Path) -> None:
    parquet = tmp_path / "i.parquet"
    parquet.write_bytes(b"PAR1\x00\xff")
    assert input_file(binary_suffixes=(".parquet",))(str(parquet)) == parquet
    json_file = tmp_path / "i.json"
    json_file.write_bytes(b"PAR1\x00\xff")
    assert "binary file" in refused(input_file(binary_suffixes=(".parquet",)), str(json_file))
    assert "is a directory" in refused(input_file(text=False), str(tmp_path))


def test_input_dir(tmp_path: Path) -> None:
    assert input_dir()(str(tmp_path)) == tmp_path
    assert input_dir(keep=("mini",))("mini") == "mini"
    assert "no such directory" in refused(input_dir(), str(tmp_path / "gone"))
    (tmp_path / "f").write_text("x")
    assert "is not a directory" in refused(input_dir(), str(tmp_path / "f"))
    assert "has no adapter_config.json" in refused(input_dir(holding="adapter_config.json"), str(tmp_path))


def test_checkpoint_file_takes_a_new_file_or_an_sqlite_database(tmp_path: Path) -> None:
    new = tmp_path / "runs.sqlite"
    assert checkpoint_file(str(new)) == new
    sqlite3.connect(new).execute("CREATE TABLE t (x)").connection.close()
    assert checkpoint_file(str(new)) == new
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"SQLite format 2\x00 but not really")
    assert "is not an SQLite checkpoint" in refused(checkpoint_file, str(garbage))
    assert "is a directory" in refused(checkpoint_file, str(tmp_path))
    assert "does not exist" in refused(checkpoint_file, str(tmp_path / "no" / "runs.sqlite"))
    assert "is not a directory" in refused(checkpoint_file, str(garbage / "runs.sqlite"))


def test_pipeline_target_checks_the_file_of_a_factory(tmp_path: Path) -> None:
    roles = tmp_path / "roles.json"
    roles.write_text("{}")
    factory = tmp_path / "p.py"
    factory.write_text("def make(): ...\n")
    assert pipeline_target(str(roles)) == str(roles)
    assert pipeline_target(f"{factory}:make") == f"{factory}:make"
    assert f"{tmp_path / 'q.py'}: no such file" in refused(pipeline_target, f"{tmp_path / 'q.py'}:make")
    assert "is a directory" in refused(pipeline_target, str(tmp_path))


def test_a_garbage_checkpoint_at_the_default_path_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "roles.json").write_text('{"roles": [{"name": "writer", "description": "writes"}]}')
    (tmp_path / ".mdap").mkdir()
    garbage = tmp_path / ".mdap" / "pipelines.sqlite"
    garbage.write_bytes(bytes(range(256)))
    assert main(["run", "say hi", "--roles", "roles.json", "--no-progress"]) == 2
    assert "checkpoint .mdap/pipelines.sqlite is not an SQLite database" in capsys.readouterr().err
    assert garbage.read_bytes() == bytes(range(256))  # left as it was
    garbage.unlink()
    results = tmp_path / ".mdap" / "pipelines.results.sqlite"
    results.write_text("not a database")
    assert main(["run", "say hi", "--roles", "roles.json", "--no-progress"]) == 2
    assert "pipelines.results.sqlite is not an SQLite database" in capsys.readouterr().err


@pytest.mark.parametrize("field", ["claim_idle_s", "heartbeat_s", "block_s"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -1.0])
def test_the_worker_config_below_the_flags_refuses_what_they_refuse(field: str, value: float) -> None:
    from mdap.errors import ConfigError
    from mdap.pool import PoolWorkerConfig

    assert getattr(PoolWorkerConfig(role="hanoi", **{field: 5.0}), field) == 5.0
    with pytest.raises(ConfigError, match="finite and > 0"):
        PoolWorkerConfig(role="hanoi", **{field: value})


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (bytes(range(256)), "is not valid Python: source code string cannot contain null bytes"),
        (b"def make(:\n", "is not valid Python: invalid syntax (line 1)"),
        (b'x = "caf\xe9"\ndef make(): ...\n', "is not valid Python: (unicode error)"),
    ],
)
def test_a_pipeline_file_that_is_not_python_is_bad_input(
    source: bytes, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    factory = tmp_path / "pipeline.py"
    factory.write_bytes(source)
    assert main(["run", f"{factory}:make", "say hi", "--no-progress"]) == 2
    assert f"pipeline file {factory} {message}" in capsys.readouterr().err
    (tmp_path / "folder.py").mkdir()
    assert main(["run", f"{tmp_path / 'folder.py'}:make", "say hi", "--no-progress"]) == 2
    assert "folder.py is not a file" in capsys.readouterr().err
