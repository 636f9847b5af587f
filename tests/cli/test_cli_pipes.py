"""`mdap ... | head`: a reader that stops early is not an error of the run (no traceback, exit 0)."""

from __future__ import annotations

import subprocess
import sys


def test_a_closed_stdout_pipe_is_no_traceback() -> None:
    cmd = [sys.executable, "-m", "mdap.cli", "hanoi", "--disks", "14", "--model", "simulated", "--no-progress"]
    cmd += ["--trace", "/dev/stdout"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert first.startswith(b'{"step":0')
    assert "Traceback" not in err and "BrokenPipeError" not in err
