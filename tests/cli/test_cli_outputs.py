"""Outputs as a user meets them (issue 14, items 3 and 8): output paths checked before the first sample, reports
written atomically and after the answer is out, a full disk named with what to do, and SWE-bench / GAIA inputs
that used to pass silently (duplicate predictions, grading errors, --solve-rate 3, empty metadata, a garbage
run.json).

A full disk is a real one: a 64 KiB tmpfs mounted for the test (as root) and filled; a read-only place is a
tmpfs remounted read-only (``chmod`` does not stop root).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mdap._outputs import check_output_dir, check_output_file, write_atomic
from mdap.cli import main
from mdap.errors import ConfigError, OutputError
from mdap.evals.swebench import MiniSuite, build_mini

ROLES = {"roles": [{"name": "writer", "description": "writes"}]}
ATTRIBUTION = {
    "name": "tiny-hanoi",
    "pipeline": "hanoi",
    "base": {"disks": 3, "error_rate": 0.2, "long_wrong_share": 0.5},
    "slots": {"voter": {"default": {"k": 1}, "test": {"k": 3}}},
    "benchmark": {"runs": 2},
    "seeds": [0],
}
FULL = "no space left on device writing"


def _main(argv: list[str]) -> int:
    """The CLI's exit code; a flag argparse refuses (SystemExit 2) counts as its exit code too."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def _mount(where: Path, size: str = "size=64k") -> None:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(where)], check=True)


def _umount(where: Path) -> None:
    """Unmount; a file still open there (a leaked descriptor of the code under test) fails the test, after a
    lazy unmount so that no mount is left behind."""
    busy = subprocess.run(["umount", str(where)], capture_output=True, text=True)
    if busy.returncode:
        subprocess.run(["umount", "-l", str(where)], check=True)
        pytest.fail(f"a file was left open on {where}: {busy.stderr.strip()}")


def _fill(folder: Path) -> None:
    """Write zeros into ``folder`` until its filesystem has no byte left."""
    fd = os.open(folder / "ballast", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        with pytest.raises(OSError, match="No space left on device") as info:  # noqa: PT012 -- ends only so
            while True:
                os.write(fd, b"\0" * 4096)
        assert info.value.errno == errno.ENOSPC  # the tmpfs, not anything else, is what stopped us
    finally:
        os.close(fd)


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, empty."""
    where = tmp_path / "tiny"
    _mount(where)
    try:
        yield where
    finally:
        _umount(where)


@pytest.fixture
def full(tiny: Path) -> Path:
    """A 64 KiB tmpfs with no free byte."""
    _fill(tiny)
    return tiny


@pytest.fixture
def readonly(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs (root cannot write there either)."""
    where = tmp_path / "ro"
    _mount(where)
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where
    finally:
        _umount(where)


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> MiniSuite:
    return build_mini(tmp_path_factory.mktemp("swe_mini"))


def _roles(tmp_path: Path) -> Path:
    path = tmp_path / "roles.json"
    path.write_text(json.dumps(ROLES))
    return path


def _attribution(tmp_path: Path) -> Path:
    path = tmp_path / "attr.json"
    path.write_text(json.dumps(ATTRIBUTION))
    return path


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.name != "ballast"]


# ---- checked before the first sample: exit 2, the flag, the path and the problem named ------------------------


def test_run_report_that_is_a_directory_stops_before_any_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "events.jsonl"
    code = _main(
        [
            *("run", "Write a haiku", "--roles", str(_roles(tmp_path)), "--no-checkpoint", "--no-progress"),
            *("--trace", str(trace), "--report", str(tmp_path)),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"--report {tmp_path}: is a directory" in err
    assert not trace.exists()  # no event (no plan, no sample) happened


def test_hanoi_report_that_is_a_directory_stops_before_any_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    code = _main(["hanoi", "--disks", "4", "--no-progress", "--run-dir", str(run_dir), "--report", str(tmp_path)])
    assert code == 2
    assert f"--report {tmp_path}: is a directory" in capsys.readouterr().err
    assert not run_dir.exists()  # no checkpoint: not one step was sampled


@pytest.mark.parametrize(
    ("flag", "kind", "problem"),
    [
        ("--run-dir", "file", "is a file, not a directory"),
        ("--trace", "dir", "is a directory"),
        ("--trace", "under-file", "is not a directory"),
        ("--report", "missing-parent", "does not exist"),
        ("--report", "proc", "cannot create files in /proc"),
        ("--report", "readonly", "Read-only file system"),
    ],
)
def test_hanoi_output_flags_are_checked_first(
    flag: str, kind: str, problem: str, tmp_path: Path, readonly: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    path = {
        "file": afile,
        "dir": tmp_path,
        "under-file": afile / "t.jsonl",
        "missing-parent": tmp_path / "nope" / "r.json",
        "proc": Path("/proc/mdap-report.json"),
        "readonly": readonly / "r.json",
    }[kind]
    args = ["hanoi", "--disks", "3", "--no-progress", flag, str(path)]
    if flag != "--run-dir":
        args += ["--run-dir", str(tmp_path / "run")]
    assert _main(args) == 2
    err = capsys.readouterr().err
    assert f"{flag} {path}" in err and problem in err
    assert not (tmp_path / "run").exists()


def test_run_checkpoint_and_trace_are_checked_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roles = str(_roles(tmp_path))
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert _main(["run", "Write", "--roles", roles, "--no-progress", "--checkpoint", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and f"{tmp_path}: is a directory" in err
    assert _main(["run", "Write", "--roles", roles, "--no-progress", "--checkpoint", str(afile / "c.sqlite")]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and str(afile) in err and "not a directory" in err
    assert afile.read_text() == "x"


def test_gaia_out_that_is_a_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert _main(["bench", "gaia", "--data", "mini", "--no-progress", "--out", str(afile)]) == 2
    assert f"--out {afile}: is a file, not a directory" in capsys.readouterr().err


def test_attribute_out_on_a_read_only_place_exits_2(
    tmp_path: Path, readonly: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = readonly / "attr"
    assert _main(["attribute", str(_attribution(tmp_path)), "--out", str(out), "--no-progress", "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}" in err and "Read-only file system" in err


def test_adapters_dataset_out_that_is_a_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["adapters", "dataset", "--disks", "3", "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path}: is a directory" in capsys.readouterr().err


# ---- a report that cannot be written at the end: the answer is out, exit 1, the path named --------------------


def test_run_report_unwritable_at_the_end_keeps_the_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _main(
        [
            *("run", "Write a haiku", "--roles", str(_roles(tmp_path)), "--no-checkpoint", "--no-progress"),
            *("--report", "/dev/full"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert out.rstrip().endswith("[simulated] do the writer part")  # the answer went to stdout anyway
    assert f"report was not written: {FULL} /dev/full" in err
    assert "Traceback" not in err


def test_hanoi_report_on_a_full_disk_keeps_the_summary_and_leaves_no_empty_file(
    tmp_path: Path, full: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = full / "r.json"
    run_dir = str(tmp_path / "run")
    code = _main(["hanoi", "--disks", "4", "--no-progress", "--run-dir", run_dir, "--report", str(report)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "total_steps" in out and "15" in out  # the summary is printed before the report is written
    assert f"{FULL} {report}: free space and rerun with --resume" in err
    assert _files(full) == []  # no 0-byte report, no temp file


# ---- a full disk during the run: exit 1, the path and what to do named, nothing half-written -------------------


def test_hanoi_run_dir_on_a_full_disk(tmp_path: Path, full: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = full / "run"
    assert _main(["hanoi", "--disks", "6", "--no-progress", "--run-dir", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert f"{FULL} {run_dir / 'checkpoint.json'}: free space and rerun with --resume" in err
    assert "Traceback" not in err and "OSError" not in err
    assert not [p for p in _files(full) if p.stat().st_size == 0 and "lock" not in p.name]


def test_hanoi_trace_filling_the_disk(tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tiny / "trace.jsonl"
    args = ["hanoi", "--disks", "10", "--no-progress", "--run-dir", str(tmp_path / "run"), "--trace", str(trace)]
    assert _main(args) == 1  # 1023 steps of trace do not fit in 64 KiB
    assert f"{FULL} {trace}: free space and rerun with --resume" in capsys.readouterr().err


def test_hanoi_resumes_from_the_checkpoint_a_full_disk_left(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, trace = tiny / "run", tiny / "trace.jsonl"
    args = ["hanoi", "--disks", "10", "--no-progress", "--run-dir", str(run_dir), "--trace", str(trace)]
    assert _main([*args, "--checkpoint-every", "100"]) == 1
    assert "free space and rerun with --resume" in capsys.readouterr().err
    saved = json.loads((run_dir / "checkpoint.json").read_text())  # the last checkpoint is whole
    assert 0 < saved["next_step"] < 1023
    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny)], check=True)  # space freed
    assert _main([*args, "--checkpoint-every", "100", "--resume"]) == 0
    shown = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert (shown["steps"], shown["total_steps"], shown["verifier_errors"]) == ("1023", "1023", "0")
    assert len(trace.read_text().splitlines()) == 1023  # every step once: the cut-off tail was dropped


def test_run_sqlite_checkpoint_on_a_full_disk(tmp_path: Path, full: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = full / "runs.sqlite"
    roles = str(_roles(tmp_path))
    assert _main(["run", "Write a haiku", "--roles", roles, "--no-progress", "--checkpoint", str(ckpt)]) == 1
    err = capsys.readouterr().err
    assert f"{FULL} {ckpt}: free space and rerun with --resume" in err
    assert "sqlite3" not in err and "Traceback" not in err


def test_gaia_filling_the_disk(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tiny / "gaia"
    assert _main(["bench", "gaia", "--data", "mini", "--no-progress", "--out", str(out)]) == 1
    stdout, err = capsys.readouterr()
    assert FULL in err and str(out) in err and "rerun with --resume" in err
    assert f"recorded in {out / 'results.jsonl'} so far:" in stdout and "accuracy" in stdout
    for name in ("summary.json", "submission.jsonl", "run.json"):  # whole or absent, never empty or cut
        path = out / name
        if path.exists():
            text = path.read_text()
            assert text.endswith("\n")
            if name.endswith(".json"):
                json.loads(text)


def test_attribute_on_a_full_disk(tmp_path: Path, full: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = full / "attr"
    assert _main(["attribute", str(_attribution(tmp_path)), "--out", str(out), "--no-progress", "--no-plot"]) == 1
    err = capsys.readouterr().err
    assert f"{FULL} {out / 'scores.jsonl'}: free space and run the same command again" in err
    assert not (out / "report.json").exists()


def test_write_atomic_on_a_full_disk_keeps_the_old_file(full: Path) -> None:
    old = full / "report.json"
    os.truncate(full / "ballast", (full / "ballast").stat().st_size - 4096)  # room for a small file
    old.write_text('{"old": true}\n')
    _fill(full)  # and full again
    with pytest.raises(OutputError, match=f"{FULL} {old}: free space and rerun with --resume"):
        write_atomic(old, json.dumps({"new": "x" * 10_000}))
    assert old.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in full.iterdir()) == ["ballast", "report.json"]  # the temp file is gone


def test_write_atomic_replaces_whole_and_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("old")
    path.chmod(0o640)
    write_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_check_helpers_name_the_flag_and_the_problem(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match=r"--out .*afile: is a file, not a directory"):
        check_output_dir(afile, "--out")
    with pytest.raises(ConfigError, match=r"--report .*: is a directory; give a file path"):
        check_output_file(tmp_path, "--report")
    assert check_output_dir(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert check_output_file(tmp_path / "new" / "t.jsonl", "--trace", make_parents=True).name == "t.jsonl"
    with pytest.raises(ConfigError, match="does not exist"):
        check_output_file(tmp_path / "new" / "r.json", "--report")
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]  # checks create nothing (the probe is removed)


# ---- SWE-bench and GAIA inputs -------------------------------------------------------------------------------


def _swebench(mini: MiniSuite, *args: str) -> int:
    return _main(
        [
            *("bench", "swebench", "--instances", str(mini.instances_file), "--repos", str(mini.repos)),
            *("--no-progress", *args),
        ]
    )


def test_duplicate_predictions_exit_2_naming_them(
    mini: MiniSuite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = mini.gold_predictions.read_text().splitlines()
    first = json.loads(lines[0])
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join([*lines, json.dumps({**first, "model_patch": ""})]) + "\n")
    report = tmp_path / "report.json"
    assert _swebench(mini, "--grade-only", "--predictions", str(preds), "--report", str(report)) == 2
    err = capsys.readouterr().err
    assert f"{first['instance_id']} (line 1, line {len(lines) + 1})" in err
    assert not report.exists() and not (tmp_path / "logs").exists()  # nothing was graded


def test_grading_errors_exit_1(mini: MiniSuite, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gold = [json.loads(line) for line in mini.gold_predictions.read_text().splitlines()]
    bad = {
        **gold[0],
        "model_patch": "diff --git a/nope.py b/nope.py\n--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-x\n+y\n",
    }
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps(bad) + "\n" + json.dumps(gold[1]) + "\n")
    report = tmp_path / "report.json"
    assert _swebench(mini, "--grade-only", "--predictions", str(preds), "--report", str(report)) == 1
    err = capsys.readouterr().err
    assert "could not be graded" in err and bad["instance_id"] in err
    data = json.loads(report.read_text())  # the report is written all the same
    assert data["error_ids"] == [bad["instance_id"]] and data["resolved_ids"] == [gold[1]["instance_id"]]


def test_grading_onto_a_full_disk_exits_1_naming_the_file(
    mini: MiniSuite, full: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = full / "report.json"
    assert _swebench(mini, "--grade-only", "--predictions", str(mini.gold_predictions), "--report", str(report)) == 1
    err = capsys.readouterr().err
    assert f"{FULL} {full / 'logs'}" in err and "free space and grade again" in err
    assert "Traceback" not in err and not report.exists()


def test_swebench_run_onto_a_full_disk_records_no_disk_failure_and_resumes(
    mini: MiniSuite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = tmp_path / "disk"
    _mount(where, "size=256k")
    try:
        out = where / "run"
        args = ["--out", str(out), "--sandbox", "none"]
        assert _swebench(mini, *args) == 1
        stdout, err = capsys.readouterr()
        assert f"{FULL} {out / 'work'}" in err and "rerun with --resume" in err
        recorded = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        assert all(r["status"] == "ok" for r in recorded)  # a checkout the disk broke is not the model's failure
        assert f"recorded in {out / 'results.jsonl'} so far: {len(recorded)} instance(s)" in stdout
        subprocess.run(["mount", "-o", "remount,size=8m", str(where)], check=True)
        assert _swebench(mini, *args, "--resume") == 0
        assert "resolved 6/6" in capsys.readouterr().out
    finally:
        _umount(where)


@pytest.mark.parametrize("rate", ["3", "-0.5", "nan"])
def test_solve_rate_outside_0_1_exits_2(
    rate: str, mini: MiniSuite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _swebench(mini, "--solve-rate", rate, "--out", str(out), "--limit", "1") == 2
    assert "--solve-rate" in capsys.readouterr().err
    assert not out.exists()


def test_swebench_report_that_is_a_directory_exits_2(
    mini: MiniSuite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _swebench(mini, "--grade-only", "--predictions", str(mini.gold_predictions), "--report", str(tmp_path))
    assert code == 2
    assert f"--report {tmp_path}: is a directory" in capsys.readouterr().err


def test_empty_gaia_metadata_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    split = tmp_path / "data" / "2023" / "validation"
    split.mkdir(parents=True)
    (split / "metadata.jsonl").write_text("\n")
    out = tmp_path / "out"
    assert _main(["bench", "gaia", "--data", str(tmp_path / "data"), "--no-progress", "--out", str(out)]) == 2
    assert f"{split / 'metadata.jsonl'} holds no questions" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("content", ["garbage{", "[1, 2]", '{"model": "simulated"}'])
def test_garbage_gaia_run_json_on_resume_exits_2(
    content: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(content)
    assert _main(["bench", "gaia", "--data", "mini", "--no-progress", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"cannot resume: {out / 'run.json'} is not the run record mdap writes" in err
    assert (out / "run.json").read_text() == content  # left as it was, for the user to look at
