"""``mdap serve``: run vLLM's OpenAI-compatible server for a base model and its LoRA adapters."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from mdap.errors import ConfigError

__all__ = ["add_parser"]


def _adapter(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--adapter takes NAME=PATH (a PEFT adapter folder), got {value!r}")
    return name, path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand."""
    p = sub.add_parser(
        "serve",
        help="serve a base model and LoRA adapters with vLLM's OpenAI-compatible server",
        description=(
            "Start vLLM's OpenAI-compatible server for a base model with LoRA enabled, wait until it is healthy, "
            "print its URL, and keep it running until Ctrl-C or SIGTERM. Use --base local for the embedded "
            "SmolLM2-135M-Instruct on the CPU. Arguments after -- go to vLLM as given."
        ),
    )
    p.add_argument("--base", required=True, help="base model: an HF model folder, a hub id, or 'local'")
    p.add_argument(
        "--adapter", type=_adapter, action="append", default=[], metavar="NAME=PATH", help="serve a LoRA adapter"
    )
    p.add_argument("--served-name", default=None, help="model name for the base (default: --base as given)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    p.add_argument("--dtype", default=None, help="weights dtype, e.g. bfloat16 (default: vLLM's; local: bfloat16)")
    p.add_argument("--max-model-len", type=int, default=None, help="context length limit")
    p.add_argument("--max-loras", type=int, default=4, help="adapters in one batch (default 4)")
    p.add_argument("--max-lora-rank", type=int, default=16, help="largest adapter rank (default 16)")
    p.add_argument("--tensor-parallel-size", type=int, default=None, help="GPUs to shard the model over")
    p.add_argument("--gpu-memory-utilization", type=float, default=None, help="share of GPU memory for vLLM")
    p.add_argument("--runtime-lora", action="store_true", help="allow loading/unloading adapters at run time")
    p.add_argument("--api-key", default=None, help="require this API key from clients")
    p.add_argument("--startup-timeout", type=float, default=900.0, help="seconds to wait for /health (default 900)")
    p.add_argument("--log", type=Path, default=None, help="file for the server's log (default: a temp file)")
    p.add_argument("vllm_args", nargs=argparse.REMAINDER, help="-- then arguments passed to vLLM as given")
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from mdap.models import VLLMServer
    from mdap.models.local import HUB_ID, LOCAL_MODEL_NAME, local_model_dir, missing_packages
    from mdap.models.local import INSTALL_HINT as LOCAL_HINT

    extra = list(args.vllm_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    names = [name for name, _ in args.adapter]
    if len(set(names)) != len(names):
        raise ConfigError(f"--adapter names must be unique, got {names}")
    base, served, dtype = args.base, args.served_name, args.dtype
    aliases: tuple[str, ...] = ()
    env: dict[str, str] = {}
    if base == "local":
        missing = missing_packages()
        if missing:
            raise ConfigError(f"--base local needs {', '.join(missing)}: {LOCAL_HINT}")
        base, served, aliases = local_model_dir(), served or LOCAL_MODEL_NAME, (HUB_ID,)
        dtype = dtype or "bfloat16"
        env = {"VLLM_CPU_KVCACHE_SPACE": "1"}
    server = VLLMServer(
        base,
        adapters=dict(args.adapter),
        served_name=served,
        base_aliases=aliases,
        host=args.host,
        port=args.port,
        dtype=dtype,
        max_model_len=args.max_model_len,
        max_loras=args.max_loras,
        max_lora_rank=args.max_lora_rank,
        tensor_parallel_size=args.tensor_parallel_size,
        gpu_memory_utilization=args.gpu_memory_utilization,
        runtime_lora=args.runtime_lora,
        api_key=args.api_key,
        extra_args=extra,
        env=env,
        startup_timeout_s=args.startup_timeout,
        log_path=args.log,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    print(f"mdap: starting vLLM for {base} ...", file=sys.stderr, flush=True)
    try:
        with server:
            models = [server.served_name, *server.adapters]
            print(f"mdap: serving {', '.join(models)} at {server.base_url} (ready after {server.startup_s or 0:.0f} s)")
            print(f"mdap: server log {server.log_path}; Ctrl-C to stop", flush=True)
            while not stop.wait(0.5):
                if not server.running:
                    print(f"mdap: error: the vLLM server exited; see {server.log_path}", file=sys.stderr)
                    return 1
    except KeyboardInterrupt:
        pass  # Ctrl-C: the with block has stopped the server
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("mdap: server stopped", file=sys.stderr)
    return 0
