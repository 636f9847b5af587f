"""VLLMServer's process handling, with a stand-in server executable (fast): health wait, start failures with the
log, timeouts, no orphan processes after stop, at interpreter exit, or when the owner is killed. The real vLLM
server is exercised in test_local_server.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mdap.errors import ConfigError, ModelError
from mdap.models import Adapter, VLLMServer

# Stands in for `python -m vllm.entrypoints.openai.api_server ...`: forks a worker (as vLLM forks its engine),
# then answers /health on --port; SIGTERM stops both. FAKE_MODE=crash exits at once, FAKE_MODE=slow never listens.
_FAKE = f"""#!{sys.executable}
import http.server, os, signal, subprocess, sys, time
mode = os.environ.get("FAKE_MODE", "ok")
print("fake vllm argv:", " ".join(sys.argv[1:]), flush=True)
print("runtime lora:", os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING"), flush=True)
if mode == "crash":
    print("ValueError: unsupported flag --bogus", flush=True)
    sys.exit(3)
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print("worker", worker.pid, flush=True)
if mode == "starting":  # like vLLM early in its start: no SIGTERM handler yet, so SIGTERM orphans the worker
    time.sleep(300)
signal.signal(signal.SIGTERM, lambda *_: (worker.kill(), sys.exit(0)))  # vLLM also stops its engine on SIGTERM
if mode == "slow":
    time.sleep(300)
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
port = int(sys.argv[sys.argv.index("--port") + 1])
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    exe = tmp_path / "fake-python"
    exe.write_text(_FAKE)
    exe.chmod(0o755)
    return exe


@pytest.fixture
def base(tmp_path: Path) -> Path:
    folder = tmp_path / "base-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def _adapter_dir(root: Path, base: Path | str, rank: int = 8) -> Path:
    root.mkdir()
    (root / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "r": rank}))
    return root


def _group_alive(group: int, wait_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + wait_s
    while True:
        left = []
        for p in psutil.process_iter(["status"]):
            try:
                if os.getpgid(p.pid) == group and p.info["status"] != psutil.STATUS_ZOMBIE:
                    left.append(p.pid)
            except (ProcessLookupError, psutil.Error):
                continue
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def test_command_passes_lora_gpu_and_extra_flags(base: Path, fake: Path, tmp_path: Path) -> None:
    lora = _adapter_dir(tmp_path / "lora", base)
    server = VLLMServer(
        base,
        adapters={"planner": lora},
        port=8123,
        dtype="bfloat16",
        max_loras=2,
        max_lora_rank=32,
        tensor_parallel_size=4,
        gpu_memory_utilization=0.85,
        extra_args=["--enforce-eager"],
        python=str(fake),
    )
    argv = server.command()
    assert argv[:3] == [str(fake), "-m", "vllm.entrypoints.openai.api_server"]
    text = " ".join(argv)
    for part in ("--enable-lora", "--max-loras 2", "--max-lora-rank 32", "--tensor-parallel-size 4",
                 "--gpu-memory-utilization 0.85", "--dtype bfloat16", "--port 8123", "--enforce-eager",
                 f"--lora-modules planner={lora}"):  # fmt: skip
        assert part in text
    assert server.base_url == "http://127.0.0.1:8123/v1"


def test_start_waits_for_health_and_stop_leaves_no_process(base: Path, fake: Path) -> None:
    with VLLMServer(base, python=str(fake), startup_timeout_s=30) as server:
        group = server.pid
        assert group is not None and server.running and server.startup_s is not None
        assert len(_group_alive(group, wait_s=0)) == 2  # the server and its worker
        assert server.log_path is not None and "runtime lora: None" in server.log_path.read_text()
    assert not server.running
    assert _group_alive(group) == []


async def test_async_context_and_runtime_lora_flag(base: Path, fake: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with VLLMServer(base, python=str(fake), runtime_lora=True) as server:
        group = server.pid
        assert group is not None
        assert server.log_path is not None and "runtime lora: True" in server.log_path.read_text()
    assert any("runtime LoRA loading is on" in r.message for r in caplog.records)
    assert _group_alive(group) == []


def test_a_server_that_exits_at_start_shows_its_log(base: Path, fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "crash")
    with pytest.raises(ModelError, match=r"exited with code 3 before it was ready(.|\n)*unsupported flag --bogus"):
        VLLMServer(base, python=str(fake)).start()


def test_a_server_that_never_gets_ready_times_out_and_is_stopped(
    base: Path, fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE", "slow")
    server = VLLMServer(base, python=str(fake), startup_timeout_s=1.5)
    with pytest.raises(ModelError, match=r"not ready after 1.5 s(.|\n)*fake vllm argv"):
        server.start()
    assert server.pid is not None and _group_alive(server.pid) == []


_OWNER = """
import os, signal, sys
from pathlib import Path
from mdap.models import VLLMServer
server = VLLMServer(Path(sys.argv[1]), python=sys.argv[2]).start()
print(server.pid, flush=True)
if sys.argv[3] == "crash":
    os.kill(os.getpid(), signal.SIGKILL)  # no atexit: the kernel's parent-death signal must stop the server
"""


@pytest.mark.parametrize("how", ["exit", "crash"])
def test_the_server_does_not_outlive_its_owner(base: Path, fake: Path, how: str) -> None:
    owner = subprocess.run(
        [sys.executable, "-c", _OWNER, str(base), str(fake), how], capture_output=True, text=True, timeout=60
    )
    assert owner.returncode == (-signal.SIGKILL if how == "crash" else 0), owner.stderr
    server_pid = int(owner.stdout.split()[0])
    deadline = time.monotonic() + 10
    while psutil.pid_exists(server_pid) and psutil.Process(server_pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"the server outlived its owner ({how})"
        time.sleep(0.1)
    assert _group_alive(server_pid) == []


_CLI_OWNER = """
import sys
from pathlib import Path
from mdap.cli import exit_on_sigterm
from mdap.models import VLLMServer
exit_on_sigterm()
VLLMServer(Path(sys.argv[1]), python=sys.argv[2], startup_timeout_s=300).start()
"""


def test_sigterm_to_a_command_starting_a_server_stops_the_whole_server_group(base: Path, fake: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", _CLI_OWNER, str(base), str(fake)],
        env={**os.environ, "FAKE_MODE": "starting"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # wait until the server has forked its worker
            servers = psutil.Process(owner.pid).children()
            if servers and servers[0].children():
                group = servers[0].pid
                break
            assert time.monotonic() < deadline, "the stand-in server never forked its worker"
            time.sleep(0.1)
        owner.send_signal(signal.SIGTERM)
        assert owner.wait(30) == 128 + signal.SIGTERM, owner.stderr.read() if owner.stderr else ""
        assert _group_alive(group) == [], "the server's worker outlived a SIGTERMed command"
    finally:
        owner.kill()
        owner.wait(10)


def test_bad_setups_are_config_errors(base: Path, fake: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no config\.json"):
        VLLMServer(tmp_path / "nope", python=str(fake))
    other = _adapter_dir(tmp_path / "other", "org/other-model")
    with pytest.raises(ConfigError, match="trained on 'org/other-model'"):
        VLLMServer(base, adapters={"x": other}, python=str(fake))
    wide = _adapter_dir(tmp_path / "wide", base, rank=64)
    with pytest.raises(ConfigError, match="rank 64, above this server's max_lora_rank 16"):
        VLLMServer(base, adapters={"x": wide}, python=str(fake))


async def test_runtime_adapters_are_opt_in(base: Path, fake: Path, tmp_path: Path) -> None:
    server = VLLMServer(base, python=str(fake))
    lora = _adapter_dir(tmp_path / "lora", base)
    with pytest.raises(ConfigError, match="runtime adapter loading is off"):
        await server.load_adapter(Adapter.from_peft("a", lora))
    with pytest.raises(ConfigError, match="runtime adapter loading is off"):
        await server.unload_adapter("a")
    on = VLLMServer(base, python=str(fake), runtime_lora=True)
    with pytest.raises(ModelError, match="not running"):
        await on.load_adapter("a", lora)
