"""SWE-bench inputs cannot place files outside --out: instance ids, repo names and prediction ids are checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdap.cli import main
from mdap.errors import ConfigError
from mdap.evals.swebench import (
    MiniSuite,
    PipelineOptions,
    build_mini,
    load_predictions,
    run_swebench,
    simulated_swebench_model,
)


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> MiniSuite:
    return build_mini(tmp_path_factory.mktemp("swe_mini"))


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _bad_instances(mini: MiniSuite, tmp: Path, **update: str) -> Path:
    record = {**mini.instances[3].record(), **update}
    path = tmp / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n")
    return path


@pytest.mark.parametrize("bad_id", ["ABS", "../../x", "a/b", "..", ".hidden__x-1", "-x__y-1", "no_number"])
def test_a_bad_instance_id_is_exit_2_and_nothing_is_written(
    mini: MiniSuite, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad_id: str
) -> None:
    root = tmp_path / "a" / "b"
    root.mkdir(parents=True)
    if bad_id == "ABS":
        bad_id = str(tmp_path / "victim" / "x")
    instances = _bad_instances(mini, tmp_path, instance_id=bad_id)
    before = _files(tmp_path)
    out = root / "out"
    argv = ["bench", "swebench", "--instances", str(instances), "--repos", str(mini.repos), "--out", str(out)]
    code = main([*argv, "--model", "simulated", "--candidates", "1", "--max-samples", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert repr(bad_id) in err and str(instances) in err and "owner__repo-number" in err
    assert _files(tmp_path) == before  # nothing written anywhere: not in --out, not outside it


@pytest.mark.parametrize("bad_repo", ["../..", "mdap-mini/..", "./slugkit", "mdap-mini/.git"])
def test_a_repo_that_climbs_out_of_the_repos_folder_is_refused(mini: MiniSuite, tmp_path: Path, bad_repo: str) -> None:
    from mdap.evals.swebench import load_instances

    with pytest.raises(ConfigError, match=r"bad.jsonl: line 1 .*field repo"):
        load_instances(_bad_instances(mini, tmp_path, repo=bad_repo))


def test_prediction_ids_that_are_paths_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"instance_id": "../../etc/x", "model_patch": ""}) + "\n")
    with pytest.raises(ConfigError, match=r"p.jsonl: line 1: field instance_id: .*'\.\./\.\./etc/x'"):
        load_predictions(path)


def test_inside_keeps_every_name_in_its_folder(tmp_path: Path) -> None:
    from mdap.evals.swebench.instances import inside

    assert inside(tmp_path, "x__y-1.json") == tmp_path / "x__y-1.json"
    for name in ["../x", "/etc/passwd", "a/../../b", "..", "", "a\x00b"]:
        with pytest.raises(ConfigError, match="outside"):
            inside(tmp_path, name)


async def test_run_swebench_checks_ids_it_did_not_load(mini: MiniSuite, tmp_path: Path) -> None:
    """A caller's instance built without validation (model_copy) still cannot write outside ``out``."""
    good = mini.instances[3]
    bad = good.model_copy(update={"instance_id": "../../escaped"})
    out = tmp_path / "a" / "b" / "out"
    model = simulated_swebench_model(mini.instances)
    before = _files(tmp_path)
    with pytest.raises(ConfigError, match=r"'\.\./\.\./escaped'"):
        await run_swebench(
            [bad], mini.repos, out, model, model_name="s", options=PipelineOptions(candidates=1), progress=False
        )
    assert {p for p in _files(tmp_path) - before if not p.is_relative_to(out)} == set()


def test_official_harness_run_id_cannot_name_a_path(
    mini: MiniSuite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "swebench", "--instances", str(mini.instances_file), "--repos", str(mini.repos)]
    argv += ["--grade-only", "--harness", "official", "--predictions", str(mini.gold_predictions)]
    code = main([*argv, "--report", str(tmp_path / "r.json"), "--run-id", "../../x", "--no-progress"])
    assert code == 2
    assert "--run-id '../../x' must be letters" in capsys.readouterr().err
