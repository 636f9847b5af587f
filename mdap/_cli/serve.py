"""``mdap serve``: run vLLM's OpenAI-compatible server for a base model and its LoRA adapters, or (``--simulated``)
mdap's simulated OpenAI-compatible server."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from mdap._cli._args import (
    ArgType,
    finite_float,
    nonneg_int,
    port,
    positive_float,
    positive_int,
    probability,
)
from mdap._outputs import check_output_file
from mdap.errors import ConfigError

__all__ = ["add_parser"]


def _parse_adapter(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--adapter takes NAME=PATH (a PEFT adapter folder), got {value!r}")
    return name, path  # the folder is checked before the server starts (VLLMServer names what is missing)


_adapter = ArgType(_parse_adapter, "NAME=PATH", path_kind="input_dir")


_PARSER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _tool_parser(value: str) -> str:
    """``--tool-parser``: ``auto``, ``none`` or a vLLM tool-call parser name (``hermes``, ``llama3_json``, ...)."""
    if not _PARSER_NAME.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is no tool parser name: give auto, none or one of vLLM's (e.g. hermes, llama3_json, mistral)"
        )
    return value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand."""
    p = sub.add_parser(
        "serve",
        help="serve a base model and LoRA adapters with vLLM's OpenAI-compatible server",
        description=(
            "Start vLLM's OpenAI-compatible server for a base model with LoRA enabled, wait until it is healthy, "
            "print its URL, and keep it running until Ctrl-C or SIGTERM. Use --base local for the embedded "
            "SmolLM2-135M-Instruct on the CPU. Arguments after -- go to vLLM as given. With --simulated, serve "
            "mdap's simulated OpenAI-compatible server instead (no model, no GPU): for load tests of any client."
        ),
    )
    p.add_argument("--base", default=None, help="base model: an HF model folder, a hub id, or 'local' (vLLM)")
    p.add_argument("--simulated", action="store_true", help="serve the simulated model instead of vLLM")
    p.add_argument("--task", choices=("hanoi", "echo"), default="hanoi", help="simulated: what it answers")
    p.add_argument("--error-rate", type=probability, default=0.0, help="simulated: per-sample wrong-answer rate")
    p.add_argument(
        "--latency-ms", type=finite_float(0.0, 3_600_000.0), default=0.0, help="simulated: milliseconds per request"
    )
    p.add_argument("--fault-rate", type=probability, default=0.0, help="simulated: share of requests => 503")
    p.add_argument("--seed", type=nonneg_int, default=0, help="simulated: seed of the answers and faults")
    p.add_argument(
        "--adapter", type=_adapter, action="append", default=[], metavar="NAME=PATH", help="serve a LoRA adapter"
    )
    p.add_argument("--served-name", default=None, help="model name for the base (default: --base as given)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=None, help="port (default: a free one)")
    p.add_argument("--dtype", default=None, help="weights dtype, e.g. bfloat16 (default: vLLM's; local: bfloat16)")
    p.add_argument("--max-model-len", type=positive_int, default=None, help="context length limit")
    p.add_argument("--max-loras", type=positive_int, default=4, help="adapters in one batch (default 4)")
    p.add_argument("--max-lora-rank", type=positive_int, default=16, help="largest adapter rank (default 16)")
    p.add_argument("--tensor-parallel-size", type=positive_int, default=None, help="GPUs to shard the model over")
    p.add_argument(
        "--gpu-memory-utilization",
        type=finite_float(0.0, 1.0, low_open=True),
        default=None,
        help="share of GPU memory for vLLM",
    )
    p.add_argument("--runtime-lora", action="store_true", help="allow loading/unloading adapters at run time")
    p.add_argument("--api-key", default=None, help="require this API key from clients")
    p.add_argument(
        "--tool-parser",
        type=_tool_parser,
        default="auto",
        help="native tool calls: a vLLM tool-call parser name, auto (the model family's: hermes for Qwen; "
        "default) or none",
    )
    p.add_argument(
        "--startup-timeout", type=positive_float, default=900.0, help="seconds to wait for /health (default 900)"
    )
    p.add_argument("--log", type=Path, default=None, help="file for the server's log (default: a temp file)")
    p.add_argument("vllm_args", nargs=argparse.REMAINDER, help="-- then arguments passed to vLLM as given")
    p.set_defaults(handler=_serve)


def _serve_simulated(args: argparse.Namespace) -> int:
    from mdap.evals.hanoi import simulated_hanoi_model
    from mdap.models import SimulatedModel
    from mdap.models._process import free_port
    from mdap.models.sim_server import RunningServer, SimServer

    if args.task == "hanoi":
        model = simulated_hanoi_model(error_rate=args.error_rate, seed=args.seed)
    else:
        model = SimulatedModel(lambda messages: messages[-1]["content"], error_rate=args.error_rate, seed=args.seed)
    sim = SimServer(model, name=args.served_name or "simulated", latency_s=args.latency_ms / 1000,
                    fault_rate=args.fault_rate, seed=args.seed, api_key=args.api_key)  # fmt: skip
    server = RunningServer(sim, host=args.host, port=args.port or free_port(args.host))
    print(f"mdap: serving the simulated {args.task} model {sim.name!r} at {server.base_url}; Ctrl-C to stop")
    sys.stdout.flush()
    # uvicorn stops on Ctrl-C or SIGTERM, then raises the signal again for the handler it found: a no-op here
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # Ctrl-C: uvicorn has stopped the server
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("mdap: server stopped", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    if args.simulated:
        return _serve_simulated(args)
    if args.base is None:
        raise ConfigError("mdap serve needs --base (a model for vLLM) or --simulated")
    if args.log is not None:  # before a model is loaded
        check_output_file(args.log, "--log")
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
        tool_parser=None if args.tool_parser == "none" else args.tool_parser,
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
            tools = f"native tool calls ({server.tool_parser})" if server.tool_parser else "no native tool calls"
            print(f"mdap: {tools}; server log {server.log_path}; Ctrl-C to stop", flush=True)
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
