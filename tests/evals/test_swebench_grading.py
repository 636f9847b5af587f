"""Local SWE-bench grading on the swe_mini repos: real git checkouts, real pytest runs in subprocesses."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mdap.cli import main
from mdap.errors import ConfigError
from mdap.evals.swebench import (
    MiniSuite,
    Prediction,
    SWEInstance,
    build_mini,
    grade_instance,
    grade_predictions,
    grade_tests,
    parse_pytest_summary,
)
from mdap.evals.swebench._proc import checkout_at, diff_all, git

GOLD_REPORT_KEYS = {"resolved_ids", "unresolved_ids", "error_ids", "errors", "empty_patch_ids", "instances"}


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> MiniSuite:
    """The swe_mini suite, built once for this module."""
    return build_mini(tmp_path_factory.mktemp("swe_mini"))


def _inst(mini: MiniSuite, name: str) -> SWEInstance:
    return next(i for i in mini.instances if i.name == name)


def _patch(mini: MiniSuite, inst: SWEInstance, tmp: Path, edit: Callable[[Path], None]) -> str:
    """A patch made the way a person would: check out the base commit, edit files, take the diff."""
    checkout = tmp / f"edit-{inst.name}"
    sha = checkout_at(mini.repos / inst.name, inst.base_commit, checkout)
    edit(checkout)
    return diff_all(checkout, sha)


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_mini_suite_is_real_repos_at_the_pinned_commits(mini: MiniSuite) -> None:
    assert len(mini.instances) >= 5
    for inst in mini.instances:
        repo = mini.repos / inst.name
        assert (repo / ".git").is_dir() and (repo / "pyproject.toml").is_file()
        assert inst.base_commit in (repo / ".git" / "refs" / "heads" / "main").read_text()
        assert inst.FAIL_TO_PASS and inst.PASS_TO_PASS and inst.problem_statement
    with pytest.raises(ConfigError, match="already exists"):
        build_mini(mini.root)


def test_gold_patches_resolve_via_the_grade_only_cli(
    mini: MiniSuite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "report.json"
    argv = ["bench", "swebench", "--grade-only", "--predictions", str(mini.gold_predictions)]
    argv += ["--instances", str(mini.instances_file), "--repos", str(mini.repos), "--report", str(report_path)]
    assert main([*argv, "--workers", "2", "--no-progress"]) == 0
    report = json.loads(report_path.read_text())
    ids = [i.instance_id for i in mini.instances]
    assert set(report) >= GOLD_REPORT_KEYS
    assert report["resolved_ids"] == ids
    assert report["unresolved_ids"] == [] and report["errors"] == {}
    for iid in ids:
        status = report["instances"][iid]["tests_status"]
        assert status["FAIL_TO_PASS"]["failure"] == [] and status["PASS_TO_PASS"]["failure"] == []
    out = capsys.readouterr().out
    assert f"resolved {len(ids)}/{len(ids)} (100.0%)" in out
    assert (tmp_path / "logs" / f"{ids[0]}.log").read_text().count("PASSED") >= 1


async def test_empty_patches_do_not_resolve_and_fail_exactly_fail_to_pass(mini: MiniSuite) -> None:
    empty = {i.instance_id: Prediction(instance_id=i.instance_id, model_patch="") for i in mini.instances}
    report = await grade_predictions(empty, mini.instances, mini.repos, workers=2)
    ids = [i.instance_id for i in mini.instances]
    assert report.resolved_ids == [] and report.unresolved_ids == ids
    assert report.empty_patch_ids == ids and report.errors == {}
    for inst in mini.instances:
        status = report.instances[inst.instance_id].tests_status
        assert sorted(status["FAIL_TO_PASS"]["failure"]) == sorted(inst.FAIL_TO_PASS)
        assert sorted(status["PASS_TO_PASS"]["success"]) == sorted(inst.PASS_TO_PASS)


def test_a_patch_that_breaks_a_pass_to_pass_test_is_unresolved(mini: MiniSuite, tmp_path: Path) -> None:
    inst = _inst(mini, "spans")

    def fix_but_stop_sorting(repo: Path) -> None:
        _replace(repo / "spans/merge.py", "start < out[-1][1]", "start <= out[-1][1]")
        _replace(repo / "spans/merge.py", "in sorted(intervals)", "in intervals")

    grade = grade_instance(inst, _patch(mini, inst, tmp_path, fix_but_stop_sorting), mini.repos)
    assert grade.patch_applied and not grade.resolved and grade.error is None
    assert "tests/test_merge.py::test_merges_touching" in grade.tests_status["FAIL_TO_PASS"]["success"]
    assert grade.tests_status["PASS_TO_PASS"]["failure"] == ["tests/test_merge.py::test_sorts_input"]


def test_the_model_cannot_change_the_tests_that_judge_it(mini: MiniSuite, tmp_path: Path) -> None:
    inst = _inst(mini, "tinystats")

    def gold_plus_test_edit(repo: Path) -> None:
        _replace(repo / "tinystats/central.py", "    return data[len(data) // 2]\n", "    return 99\n")
        _replace(repo / "tests/test_central.py", "assert median([3, 1, 2]) == 2", "assert median([3, 1, 2]) == 99")

    grade = grade_instance(inst, _patch(mini, inst, tmp_path, gold_plus_test_edit), mini.repos)
    # the test file is reset to the base commit before the test patch: the model's "99" test is gone
    assert grade.patch_applied and not grade.resolved
    assert "tests/test_central.py::test_median_odd" in grade.tests_status["PASS_TO_PASS"]["failure"]


def test_bare_repositories_work_and_the_user_repo_is_left_alone(mini: MiniSuite, tmp_path: Path) -> None:
    inst = _inst(mini, "versions")
    repos = tmp_path / "bare"
    git(["clone", "-q", "--bare", str(mini.repos / inst.name), str(repos / inst.name)], cwd=tmp_path)
    before = git(["for-each-ref"], cwd=repos / inst.name)
    assert grade_instance(inst, inst.patch, repos).resolved
    assert git(["for-each-ref"], cwd=repos / inst.name) == before
    assert not git(["status", "--porcelain"], cwd=mini.repos / inst.name).strip()


def test_a_patch_that_does_not_apply_is_an_error_and_unresolved(mini: MiniSuite) -> None:
    inst = _inst(mini, "numerals")
    bad = inst.patch.replace("return sum(_LETTERS[ch] for ch in letters)", "return something_else")
    grade = grade_instance(inst, bad, mini.repos)
    assert not grade.patch_applied and not grade.resolved
    assert grade.error is not None and grade.error.startswith("the model patch does not apply")


def test_hanging_tests_time_out_and_are_an_error(mini: MiniSuite, tmp_path: Path) -> None:
    inst = _inst(mini, "lrucache")

    def hang(repo: Path) -> None:
        _replace(
            repo / "lrucache/cache.py",
            "            return default\n",
            "            while True:\n                pass\n",
        )

    grade = grade_instance(inst, _patch(mini, inst, tmp_path, hang), mini.repos, timeout_s=4.0)
    assert not grade.resolved and grade.error == "the tests timed out after 4s"
    assert grade.seconds < 30


def test_grade_only_bad_input_exits_2_with_the_reason(
    mini: MiniSuite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["bench", "swebench", "--grade-only", "--instances", str(mini.instances_file), "--no-progress"]
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"instance_id": "nobody__nothing-1", "model_patch": ""}) + "\n")
    report = str(tmp_path / "r.json")
    assert main([*base, "--repos", str(mini.repos), "--predictions", str(preds), "--report", report]) == 2
    assert "predictions for instances not in the instance file: nobody__nothing-1" in capsys.readouterr().err
    empty_repos = tmp_path / "repos"
    empty_repos.mkdir()
    gold = str(mini.gold_predictions)
    assert main([*base, "--repos", str(empty_repos), "--predictions", gold, "--report", report]) == 2
    assert f"no git repository at {empty_repos / 'slugkit'}" in capsys.readouterr().err
    assert main([*base, "--repos", str(mini.repos), "--predictions", gold]) == 2
    assert "--grade-only needs --predictions FILE and --report FILE" in capsys.readouterr().err


def test_official_harness_without_docker_is_a_clear_error(
    mini: MiniSuite, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-docker.sock'}")
    argv = ["bench", "swebench", "--grade-only", "--harness", "official", "--instances", str(mini.instances_file)]
    argv += ["--repos", str(mini.repos), "--predictions", str(mini.gold_predictions)]
    assert main([*argv, "--report", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "--harness official needs a running Docker daemon" in err and "no-docker.sock" in err
    assert not (tmp_path / "r.json").exists()


def test_pytest_summary_parsing_and_the_resolution_rule() -> None:
    log = "\n".join(
        [
            "PASSED tests/t.py::test_a",
            "FAILED tests/t.py::test_b - AssertionError: x - y",
            "ERROR tests/t.py::test_c - fixture missing",
            "SKIPPED [1] tests/t.py:9: no network",
            "SKIPPED tests/t.py::test_d",
            "XFAIL tests/t.py::test_e[1-2] - known",
            "some other line PASSED tests/t.py::test_z",
        ]
    )
    statuses = parse_pytest_summary(log)
    assert statuses == {
        "tests/t.py::test_a": "PASSED",
        "tests/t.py::test_b": "FAILED",
        "tests/t.py::test_c": "ERROR",
        "tests/t.py::test_d": "SKIPPED",
        "tests/t.py::test_e[1-2]": "XFAIL",
    }
    _, report, resolved = grade_tests(statuses, ["tests/t.py::test_a", "tests/t.py::test_e[1-2]"], [], kind="mdap")
    assert resolved and report["FAIL_TO_PASS"]["success"] == ["tests/t.py::test_a", "tests/t.py::test_e[1-2]"]
    # a skipped PASS_TO_PASS test is not a regression; a skipped FAIL_TO_PASS test is not a fix
    assert grade_tests(statuses, ["tests/t.py::test_a"], ["tests/t.py::test_d"], kind="mdap")[2]
    assert not grade_tests(statuses, ["tests/t.py::test_d"], [], kind="mdap")[2]
    # a test missing from the run counts as failed, on either list
    _, report, resolved = grade_tests(statuses, ["tests/t.py::test_a"], ["tests/t.py::gone"], kind="mdap")
    assert not resolved and report["PASS_TO_PASS"]["failure"] == ["tests/t.py::gone"]
    assert not grade_tests(statuses, ["tests/t.py::test_b"], ["tests/t.py::test_a"], kind="mdap")[2]
    assert not grade_tests(statuses, ["tests/t.py::test_c"], [], kind="mdap")[2]


def test_grader_swebench_uses_the_package_or_says_how_to_install_it(
    mini: MiniSuite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    inst = _inst(mini, "spans")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"instance_id": inst.instance_id, "model_patch": inst.patch}) + "\n")
    argv = ["bench", "swebench", "--grade-only", "--grader", "swebench", "--instances", str(mini.instances_file)]
    argv += ["--repos", str(mini.repos), "--predictions", str(preds), "--report", str(tmp_path / "r.json")]
    code = main([*argv, "--no-progress"])
    if importlib.util.find_spec("swebench") is None:
        assert code == 2
        assert "pip install 'mdap[swebench-harness]'" in capsys.readouterr().err
    else:  # the package's grading functions decide, and the report names them
        assert code == 0
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["grader"].startswith("swebench ") and report["resolved_ids"] == [inst.instance_id]
