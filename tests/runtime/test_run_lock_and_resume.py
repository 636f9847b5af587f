"""One coordinator per run (a lock that dies with its holder) and a resume that verifies, never guesses."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from runtime_helpers import Crashing

from mdap import CheckpointError, Executor, FirstToAheadByK
from mdap.checkpoint import Checkpoint, Counters, RunInUse, RunLock, lock_path
from mdap.evals.hanoi import hanoi_chain, simulated_hanoi_model


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def until(predicate: Callable[[], bool]) -> None:
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise TimeoutError("the first run did not get going")


def lock(path: Path) -> RunLock:
    return RunLock(path, what=f"run directory {path.parent}", way_out="use another --run-dir")


async def killed_run(tmp_path: Path, *, trace: bool = True) -> tuple[Path, Path]:
    """A 9-disk run (511 steps) killed after its checkpoint at step 128 or later; returns (checkpoint, trace)."""
    ckpt, path = tmp_path / "ckpt.json", tmp_path / "trace.jsonl"
    crashing = Crashing(simulated_hanoi_model(error_rate=0.02, seed=5), calls=300)
    executor = Executor(
        crashing, FirstToAheadByK(k=2), checkpoint=ckpt, checkpoint_every=64, trace=path if trace else None
    )
    with pytest.raises(KeyboardInterrupt):
        await executor.run(hanoi_chain(9))
    assert json.loads(ckpt.read_text())["next_step"] >= 128
    return ckpt, path


def resumer(ckpt: Path, trace: Path | None) -> Executor:  # type: ignore[type-arg]
    return Executor(
        simulated_hanoi_model(seed=6), FirstToAheadByK(k=2), checkpoint=ckpt, checkpoint_every=64, trace=trace
    )


# -- the lock -------------------------------------------------------------------------------------------------


def test_a_second_holder_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    path = tmp_path / "rd" / "checkpoint.json.lock"
    with lock(path):
        with pytest.raises(RunInUse) as info:
            lock(path).acquire()
        assert info.value.pid == os.getpid()
        assert str(info.value) == (
            f"run directory {tmp_path / 'rd'} is in use by pid {os.getpid()} (another mdap coordinator); "
            "wait for it or use another --run-dir"
        )
    with lock(path):  # released on exit: taken again at once
        assert path.read_text().strip() == str(os.getpid())


def test_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json.lock"
    holder = (
        "import sys, time\nfrom pathlib import Path\nfrom mdap.checkpoint import RunLock\n"
        "RunLock(Path(sys.argv[1]), what='x', way_out='y').acquire()\nprint('held', flush=True)\ntime.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder, str(path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
        with pytest.raises(RunInUse, match=f"in use by pid {proc.pid} ") as info:
            lock(path).acquire()
        assert info.value.pid == proc.pid
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with lock(path) as held:  # nobody cleaned anything up: the kernel dropped the dead holder's lock
        assert held.held


async def test_a_second_executor_on_the_same_checkpoint_fails_at_once(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.json"
    slow = simulated_hanoi_model(latency_s=0.002, seed=1)
    first = asyncio.create_task(
        Executor(slow, FirstToAheadByK(k=2), checkpoint=ckpt, checkpoint_every=8).run(hanoi_chain(8))
    )
    await until(ckpt.exists)
    second_model = simulated_hanoi_model(seed=2)
    with pytest.raises(RunInUse, match=re.escape(f"checkpoint {ckpt} is in use by pid {os.getpid()} (")):
        await Executor(second_model, FirstToAheadByK(k=2), checkpoint=ckpt).run(hanoi_chain(8), resume=True)
    assert second_model.samples_drawn == 0
    report = await first
    assert report.ok and report.steps == 255
    assert json.loads(ckpt.read_text())["next_step"] == 255  # the second did not write over the first
    assert names(tmp_path) == ["ckpt.json", lock_path(ckpt).name]  # no temp file left behind


async def test_two_runs_cannot_write_one_trace(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    slow = simulated_hanoi_model(latency_s=0.002, seed=1)
    first = asyncio.create_task(Executor(slow, FirstToAheadByK(k=2), trace=trace).run(hanoi_chain(7)))
    await until(trace.exists)
    with pytest.raises(RunInUse, match=re.escape(f"trace {trace} is being written by another mdap run")):
        await Executor(simulated_hanoi_model(), FirstToAheadByK(k=2), trace=trace).run(hanoi_chain(7))
    await first
    assert [json.loads(line)["step"] for line in trace.read_text().splitlines()] == list(range(127))


# -- resume verifies the trace ------------------------------------------------------------------------------


async def test_resume_never_touches_a_trace_the_checkpoint_did_not_write(tmp_path: Path) -> None:
    ckpt, trace = await killed_run(tmp_path)
    foreign = tmp_path / "existing.jsonl"
    foreign.write_bytes(trace.read_bytes())  # even a copy of the right trace: not the file the checkpoint wrote
    before = foreign.read_bytes()
    with pytest.raises(CheckpointError) as info:
        await resumer(ckpt, foreign).run(hanoi_chain(9), resume=True)
    assert foreign.read_bytes() == before
    assert f"pass the trace this checkpoint wrote: {trace.resolve()}" in str(info.value)
    assert "rerun without --resume" in str(info.value)
    report = await resumer(ckpt, trace).run(hanoi_chain(9), resume=True)  # the way out named works
    assert report.ok and [json.loads(x)["step"] for x in trace.read_text().splitlines()] == list(range(511))


async def test_resume_with_a_trace_onto_a_checkpoint_without_one_is_refused_untouched(tmp_path: Path) -> None:
    ckpt, _ = await killed_run(tmp_path, trace=False)
    existing = tmp_path / "existing.jsonl"
    existing.write_text('{"mine": 1}\n' * 100)
    with pytest.raises(CheckpointError, match="written without a trace"):
        await resumer(ckpt, existing).run(hanoi_chain(9), resume=True)
    assert existing.read_text() == '{"mine": 1}\n' * 100


async def test_resume_without_the_trace_the_checkpoint_wrote_is_refused(tmp_path: Path) -> None:
    ckpt, trace = await killed_run(tmp_path)
    with pytest.raises(CheckpointError, match=re.escape(f"continues the trace {trace.resolve()}")):
        await resumer(ckpt, None).run(hanoi_chain(9), resume=True)


async def test_a_checkpoint_offset_moved_back_is_refused_and_the_trace_kept(tmp_path: Path) -> None:
    ckpt, trace = await killed_run(tmp_path)
    data = json.loads(ckpt.read_text())
    lines = trace.read_bytes().splitlines(keepends=True)
    data["trace_bytes"] = sum(map(len, lines[:100]))  # "line 15,000 of 30,000" in small
    ckpt.write_text(json.dumps(data))
    before = trace.read_bytes()
    with pytest.raises(
        CheckpointError, match=f"is step 99, but the checkpoint continues after step {data['next_step'] - 1}"
    ):
        await resumer(ckpt, trace).run(hanoi_chain(9), resume=True)
    assert trace.read_bytes() == before


async def test_a_rewritten_last_record_is_refused(tmp_path: Path) -> None:
    ckpt, trace = await killed_run(tmp_path)
    data = json.loads(ckpt.read_text())
    raw = trace.read_bytes()
    head, cut = raw[: data["trace_bytes"]], raw[data["trace_bytes"] :]
    last = head.rstrip(b"\n").rsplit(b"\n", 1)[1]
    forged = json.dumps({**json.loads(last), "samples": 999}, separators=(",", ":")).encode()
    trace.write_bytes(head[: len(head) - len(last) - 1] + forged + b"\n" + cut)
    data["trace_bytes"] += len(forged) - len(last)
    ckpt.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="not the one the checkpoint wrote"):
        await resumer(ckpt, trace).run(hanoi_chain(9), resume=True)


async def test_a_trace_shorter_than_the_checkpoint_is_refused(tmp_path: Path) -> None:
    ckpt, trace = await killed_run(tmp_path)
    trace.write_bytes(trace.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="has 50 bytes but the checkpoint expects"):
        await resumer(ckpt, trace).run(hanoi_chain(9), resume=True)
    assert trace.stat().st_size == 50


# -- the checkpoint file ------------------------------------------------------------------------------------


def valid(tmp_path: Path) -> dict[str, object]:
    return {
        "version": 2,
        "task": "hanoi:4",
        "next_step": 4,
        "state": {"pegs": [[4, 3], [2], [1]], "prev": None},
        "k": 2,
        "counters": {"samples": 12, "errors": 0},
        "trace": str(tmp_path / "t.jsonl"),
        "trace_bytes": 100,
        "trace_tail": "a" * 64,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"next_step": -1}, "next_step: Input should be greater than or equal to 0"),
        ({"next_step": "4"}, "next_step: Input should be a valid integer"),
        ({"next_step": 16}, "next_step 16 is past the 15 steps of hanoi:4"),
        ({"k": 0}, "k: Input should be greater than or equal to 1"),
        ({"trace_bytes": -5}, "trace_bytes: Input should be greater than or equal to 0"),
        ({"trace": "relative.jsonl"}, "not an absolute path"),
        ({"trace_bytes": None}, "trace and trace_bytes must be given together"),
        ({"trace_tail": "xyz"}, "trace_tail: String should match pattern"),
        ({"counters": {"samples": "many"}}, "counters.samples: Input should be a valid integer"),
        ({"counters": {"errors": 9}}, "counts more errors"),
        ({"counters": {"errors": 1, "first_error_step": 7}}, "first_error_step 7 does not fit"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"version": 1}, "has version 1, this mdap reads 2"),
        ({"task": "hanoi:5"}, "is of task 'hanoi:5', not 'hanoi:4'"),
    ],
)
def test_every_checkpoint_field_is_checked(tmp_path: Path, change: dict[str, object], message: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**valid(tmp_path), **change}))
    with pytest.raises(CheckpointError, match=r"rerun without --resume|use another run directory") as info:
        Checkpoint.load(path, "hanoi:4", 15)
    assert message in str(info.value)


def test_the_valid_checkpoint_of_those_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(valid(tmp_path)))
    assert Checkpoint.load(path, "hanoi:4", 15).counters == Counters(samples=12)


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe\x00\x81binary",
        b"{not json",
        b"",
        b"[1, 2]",
        b'"a string"',
        '{"x": "\udcff"}'.encode("utf-8", "surrogatepass"),
    ],
)
def test_garbage_checkpoints_are_refused_with_a_message(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(raw)
    with pytest.raises(CheckpointError, match=f"{re.escape(str(path))}.*unreadable.*rerun without --resume"):
        Checkpoint.load(path, "hanoi:4", 15)


async def test_a_bad_state_in_a_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    ckpt, trace = await killed_run(tmp_path)
    data = json.loads(ckpt.read_text())
    data["state"] = {"pegs": "nonsense"}
    ckpt.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="rerun without --resume"):
        await resumer(ckpt, trace).run(hanoi_chain(9), resume=True)


def test_a_failed_save_keeps_the_old_checkpoint_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.json"
    old = Checkpoint(task="hanoi:4", next_step=2, state={}, counters=Counters(samples=6))
    old.save(path)
    before = path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        Checkpoint(task="hanoi:4", next_step=4, state={}, counters=Counters(samples=12)).save(path)
    assert path.read_bytes() == before
    assert names(tmp_path) == ["c.json"]


def test_two_writers_never_share_a_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    script = (
        "import sys\nfrom pathlib import Path\nfrom mdap.checkpoint import Checkpoint, Counters\n"
        "for i in range(300):\n"
        "    Checkpoint(task='t', next_step=i, state={}, counters=Counters()).save(Path(sys.argv[1]))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path)], stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert Checkpoint.load(path, "t", 1000).next_step == 299
    assert names(tmp_path) == ["c.json"]


def test_a_lock_in_a_read_only_place_is_a_checkpoint_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CheckpointError, match="cannot lock"):
        lock(blocker / "sub" / "checkpoint.json.lock").acquire()


def test_the_holders_pid_is_read_even_if_written_late(tmp_path: Path) -> None:
    path = tmp_path / "l"
    with lock(path):
        path.write_text("")  # the holder has locked but not yet written its pid: the reader names no pid
        t0 = time.monotonic()
        with pytest.raises(RunInUse, match="in use by another process") as info:
            lock(path).acquire()
        assert info.value.pid is None and time.monotonic() - t0 < 2


async def test_a_trace_on_dev_null_is_neither_locked_nor_cut_nor_recorded(tmp_path: Path) -> None:
    null = Path(os.devnull)
    ckpt = tmp_path / "ckpt.json"

    def executor() -> Executor:  # type: ignore[type-arg]
        return Executor(
            simulated_hanoi_model(seed=3), FirstToAheadByK(k=2), checkpoint=ckpt, checkpoint_every=8, trace=null
        )

    both = await asyncio.gather(
        executor().run(hanoi_chain(6)),
        Executor(simulated_hanoi_model(), FirstToAheadByK(k=2), trace=null).run(hanoi_chain(6)),
    )
    assert all(r.ok for r in both)  # two runs may share /dev/null
    saved = json.loads(ckpt.read_text())
    assert saved["trace"] is None and saved["trace_bytes"] is None
    report = await executor().run(hanoi_chain(6), resume=True)
    assert report.ok and report.resumed_from == 63
