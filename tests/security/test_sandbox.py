"""Attacks on the host from model-written code, one test each: the python and shell tools run in the sandbox
(bubblewrap) and none of these reach the host. Each failed on the unsandboxed tools of before."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psutil
import pytest

from mdap.agents import Limits, Sandbox, Workspace, builtin_tools, python_tool, shell_tool
from mdap.agents.sandbox import Completed
from mdap.errors import ConfigError, SandboxError

SECRET = "sk-mdap-test-" + uuid.uuid4().hex


@pytest.fixture(autouse=True)
def _secret_in_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process holds a key, as a user's shell does."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws")


def _host_processes_with(marker: str) -> list[int]:
    """Host processes whose command line holds ``marker`` (this test's own process excluded)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline and proc.info["pid"] != os.getpid():
            found.append(proc.info["pid"])
    return found


async def test_the_parents_environment_is_not_readable(ws: Workspace) -> None:
    shell = shell_tool(ws)
    out = await shell.call({"command": "cat /proc/$PPID/environ /proc/1/environ; env; echo done"})
    assert "done" in out
    assert SECRET not in out
    out = await python_tool(ws).call(
        {"code": "import os\nfor p in os.listdir('/proc'):\n    try: print(open(f'/proc/{p}/environ').read())\n"
         "    except OSError: pass\nprint(dict(os.environ))"}
    )  # fmt: skip
    assert SECRET not in out and "PATH" in out


async def test_no_view_of_host_processes(ws: Workspace) -> None:
    out = await shell_tool(ws).call({"command": "ls /proc | grep -c '^[0-9]'"})
    count = int(out.split()[-1])
    assert count < 10, out  # the sandbox's own few processes, not the host's hundreds
    assert str(os.getpid()) not in (await shell_tool(ws).call({"command": "ls /proc"})).split()


async def test_setsid_background_processes_do_not_outlive_the_call(ws: Workspace) -> None:
    marker = f"{40 + uuid.uuid4().int % 1000 / 1000:.3f}"  # a unique sleep duration
    out = await shell_tool(ws).call({"command": f"setsid sh -c 'sleep {marker}' & echo started"})
    assert "started" in out
    assert _host_processes_with(f"sleep {marker}") == []


async def test_a_python_double_fork_does_not_outlive_the_call(ws: Workspace) -> None:
    marker = uuid.uuid4().hex
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv('/bin/sleep', ['sleep', '41', '{marker}'])\n"
        "    os._exit(0)\n"
        "print('parent done')"
    )
    out = await python_tool(ws).call({"code": code})
    assert "parent done" in out
    assert _host_processes_with(marker) == []


async def test_a_timed_out_call_leaves_nothing_behind(ws: Workspace) -> None:
    marker = uuid.uuid4().hex
    tool = shell_tool(ws, Limits(timeout_s=1.0))
    out = await tool.call({"command": f"(setsid sleep 60 {marker} &); sleep 30"})
    assert out.startswith("error: timed out after 1s")
    assert _host_processes_with(marker) == []


async def test_a_fork_bomb_is_bounded_and_reported(ws: Workspace) -> None:
    marker = f"{50 + uuid.uuid4().int % 1000 / 1000:.3f}"
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, len(_host_processes_with(f"sleep {marker}")))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        out = await shell_tool(ws, Limits(max_processes=32, timeout_s=20)).call(
            {"command": f"for i in $(seq 2000); do sleep {marker} & done; echo spawned"}
        )
    finally:
        stop.set()
        watcher.join()
    assert "at most 32 processes" in out or "fork" in out.lower(), out[-500:]
    assert not out.startswith("exit code 0\nspawned"), "2,000 processes must not start silently"
    assert peak <= 32
    assert _host_processes_with(f"sleep {marker}") == []


async def test_huge_output_is_capped_in_the_parent(ws: Workspace) -> None:
    me = psutil.Process()
    before = me.memory_info().rss
    out = await python_tool(ws, Limits(timeout_s=30)).call(
        {"code": "import sys\nfor _ in range(400):\n    sys.stdout.write('x' * 1_000_000)\nprint('END')"}
    )
    grown = me.memory_info().rss - before
    assert grown < 100 * 1024 * 1024, f"the parent grew by {grown / 2**20:.0f} MiB"
    assert "more characters" in out and len(out) < 10_000


async def test_no_network_the_hosts_loopback_is_unreachable(
    ws: Workspace, host_listener: tuple[int, list[bytes]]
) -> None:
    port, got = host_listener
    code = (
        "import socket\n"
        "s = socket.socket()\n"
        "s.settimeout(2)\n"
        f"print('connect:', s.connect_ex(('127.0.0.1', {port})))\n"
        "try:\n"
        "    socket.create_connection(('8.8.8.8', 53), timeout=2)\n"
        "except OSError as e:\n"
        "    print('outside:', type(e).__name__)\n"
    )
    out = await python_tool(ws).call({"code": code})
    assert "connect: 0" not in out and "connect:" in out
    assert "outside:" in out
    assert got == []


async def test_writes_outside_the_workspace_do_not_reach_the_host(ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    home_file = Path.home() / f"mdap-sandbox-{uuid.uuid4().hex}"
    out = await shell_tool(ws).call(
        {"command": f"echo x > {outside}; echo x > {home_file}; echo x > /usr/mdap-x; echo ok > inside.txt; echo $?"}
    )
    assert not any(p.exists() for p in (outside, home_file, Path("/usr/mdap-x")))
    assert (ws.root / "inside.txt").read_text() == "ok\n"
    assert "Read-only file system" in out or "No such file" in out


async def test_host_files_outside_the_system_are_invisible(ws: Workspace, tmp_path: Path) -> None:
    private = tmp_path / "private.txt"
    private.write_text("do not read me")
    out = await shell_tool(ws).call({"command": f"cat {private}; ls {Path.cwd()}; echo end"})
    assert "do not read me" not in out
    assert "end" in out


async def test_a_private_tmp_and_the_python_installation_work(ws: Workspace) -> None:
    code = "import sys, tempfile\nwith tempfile.NamedTemporaryFile() as f:\n    print(sys.version_info[0], f.name)"
    out = await python_tool(ws).call({"code": code})
    assert out.startswith("3 /tmp/"), out


def test_run_sync_from_a_worker_thread_leaves_nothing_behind(tmp_path: Path) -> None:
    """SWE-bench's test runs call ``run_sync`` from worker threads: the same sandbox, the same cleanup."""
    marker = uuid.uuid4().hex
    box = Sandbox(limits=Limits(timeout_s=2.0))
    results: list[Completed] = []
    argv = ["sh", "-c", f"(setsid sleep 60 {marker} &); echo hi; read line; echo got $line; sleep 30"]
    worker = threading.Thread(target=lambda: results.append(box.run_sync(argv, cwd=tmp_path, stdin="x\n")))
    worker.start()
    worker.join(30)
    done = results[0]
    assert done.timed_out and done.code == -9 and "hi\ngot x" in done.output, done
    assert _host_processes_with(marker) == []


async def test_run_sync_inside_an_event_loop_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"await sandbox\.run"):
        Sandbox().run_sync(["true"], cwd=tmp_path)


def test_a_missing_bwrap_refuses_with_the_fix(ws: Workspace) -> None:
    box = Sandbox(bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxError, match="apt-get install bubblewrap") as err:
        box.check()
    assert "Sandbox.none()" in str(err.value)


async def test_tools_never_fall_back_to_no_sandbox(ws: Workspace) -> None:
    tools = {t.name: t for t in builtin_tools(ws, sandbox=Sandbox(bwrap="/nonexistent/bwrap"))}
    marker = ws.root / "ran"
    with pytest.raises(SandboxError):
        await tools["shell"].call({"command": f"touch {marker}"})
    with pytest.raises(SandboxError):
        await tools["python"].call({"code": f"open({str(marker)!r}, 'w')"})
    assert not marker.exists()


async def test_the_opt_out_is_explicit_and_warns_once(
    ws: Workspace, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mdap.agents.sandbox as sandbox_module

    monkeypatch.setattr(sandbox_module, "_warned_none", False)
    with caplog.at_level(logging.WARNING, logger="mdap.sandbox"):
        box = Sandbox.none()
        Sandbox.none()
        out = await python_tool(ws, sandbox=box).call({"code": "import os; print(os.environ.get('OPENAI_API_KEY'))"})
    warnings = [r for r in caplog.records if "sandbox is OFF" in r.getMessage()]
    assert len(warnings) == 1
    assert not box.isolated
    assert SECRET not in out  # even unsandboxed, the tool's environment is clean


def test_the_cli_refuses_without_bwrap(tmp_path: Path) -> None:
    roles = tmp_path / "roles.json"
    roles.write_text('{"name": "p", "workspace": "ws", "roles": [{"name": "coder", "tools": ["python"]}]}')
    env = {**os.environ, "PATH": str(tmp_path)}  # no bwrap on PATH
    done = subprocess.run(
        [sys.executable, "-m", "mdap.cli", "run", "add numbers", "--roles", str(roles), "--no-checkpoint"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "apt-get install bubblewrap" in done.stderr and "--sandbox none" in done.stderr
    assert "Traceback" not in done.stderr
