"""Running one sandboxed call's processes: feeding stdin, reading output into a bounded buffer as it arrives, and
ending every process the call started."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from mdap.errors import ToolError

__all__ = ["Capture", "cut", "feed", "kill", "start_error"]


class Capture:
    """Keeps the first and last ``limit // 2`` bytes of a stream; what falls between is counted, not kept."""

    def __init__(self, limit: int) -> None:
        self.half = max(1, limit // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail += chunk
        over = len(self.tail) - self.half
        if over > 0:
            del self.tail[:over]
            self.dropped += over

    def text(self) -> str:
        head = self.head.decode(errors="replace")
        if not self.tail:
            return head
        tail = self.tail.decode(errors="replace")
        if not self.dropped:
            return head + tail
        return f"{head}\n...[{self.dropped} bytes of output dropped]...\n{tail}"


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n...[cut {len(text) - limit} more characters]"


def start_error(program: str, err: OSError) -> Exception:
    return ToolError(f"could not start {program}: {err}")


async def feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    if proc.stdin is None:
        return
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        if data:
            proc.stdin.write(data)
            await proc.stdin.drain()
        proc.stdin.close()


def kill(pid: int) -> None:
    """Kill the call's process group (its cgroup, if any, is emptied by the caller: double forks, ``setsid``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
