"""The default SWE-bench pipeline: fix formats, the ranker, and end-to-end runs with the scripted simulated model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from mdap.cli import main
from mdap.errors import ConfigError, RedFlag
from mdap.evals.swebench import (
    ROLES,
    Candidate,
    MiniSuite,
    PatchError,
    PipelineOptions,
    apply_fix,
    build_mini,
    choose,
    diff_to_edits,
    load_predictions,
    masai_plan,
    normalize_patch,
    parse_fix,
    rank,
    run_swebench,
    simulated_swebench_model,
)
from mdap.evals.swebench._proc import checkout_at, git_apply
from mdap.models import Sample
from mdap.types import Message

OPTS = PipelineOptions(max_samples=4, test_timeout_s=60.0)


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> MiniSuite:
    """The swe_mini suite, built once for this module."""
    return build_mini(tmp_path_factory.mktemp("swe_mini"))


class Counting:
    """Counts the requests that reach a model."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls = 0

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
    ) -> list[Sample]:
        self.calls += 1
        return await self.inner.sample(  # type: ignore[attr-defined, no-any-return]
            messages, n=n, temperature=temperature, max_tokens=max_tokens, adapter=adapter
        )


def test_parse_fix_canonicalizes_edits_and_diffs_and_red_flags_the_rest() -> None:
    edits = [{"replace": "b\n", "file": "x.py", "search": "a\n"}]
    assert parse_fix(json.dumps({"edits": edits})) == parse_fix(json.dumps(edits))
    canonical = {"edits": [{"file": "x.py", "search": "a\n", "replace": "b\n"}]}
    assert json.loads(parse_fix(json.dumps({"edits": edits}))) == canonical
    diff = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"
    assert json.loads(parse_fix(diff)) == {"diff": diff}
    assert parse_fix(json.dumps({"diff": diff})) == parse_fix(diff)
    bad = [
        "I would change x.py",
        "[]",
        '{"edits": [{"file": "/etc/passwd", "search": "a", "replace": "b"}]}',
        '{"edits": [{"file": "x.py", "search": "a", "replace": "a"}]}',
        '{"edits": [{"file": "../x.py", "replace": "b"}]}',
    ]
    for text in bad:
        with pytest.raises(RedFlag):
            parse_fix(text)


def test_gold_patches_as_edits_make_the_same_change(mini: MiniSuite, tmp_path: Path) -> None:
    for inst in mini.instances:
        tree = tmp_path / inst.name
        sha = checkout_at(mini.repos / inst.name, inst.base_commit, tree)
        patch = apply_fix(tree, parse_fix(json.dumps({"edits": diff_to_edits(inst.patch)})), sha)
        assert normalize_patch(patch) == normalize_patch(inst.patch) != ""


def test_edits_tolerate_trailing_whitespace_and_refuse_ambiguity(mini: MiniSuite, tmp_path: Path) -> None:
    inst = next(i for i in mini.instances if i.name == "tinystats")
    tree = tmp_path / "t"
    sha = checkout_at(mini.repos / inst.name, inst.base_commit, tree)

    def fix(*edits: tuple[str, str, str]) -> str:
        return parse_fix(json.dumps({"edits": [{"file": f, "search": s, "replace": r} for f, s, r in edits]}))

    patch = apply_fix(
        tree, fix(("tinystats/central.py", "    return data[len(data) // 2]   \n", "    return 0\n")), sha
    )
    assert "+    return 0" in patch and "-    return data[len(data) // 2]" in patch
    git_apply(tree, "")  # nothing to apply is fine
    with pytest.raises(PatchError, match="appears 2 times"):
        apply_fix(tree, fix(("tinystats/central.py", "    if not data:\n", "    if data is None:\n")), sha)
    with pytest.raises(PatchError, match="no such file"):
        apply_fix(tree, fix(("tinystats/nope.py", "x", "y")), sha)
    with pytest.raises(PatchError, match="is not in the file"):
        apply_fix(tree, fix(("tinystats/central.py", "def median_of_medians", "x")), sha)


def test_normalized_patches_ignore_context_and_hunk_positions() -> None:
    one = "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1,3 +1,3 @@\n ctx\n-a = 1\n+a = 2  \n ctx\n"
    two = "diff --git a/m.py b/m.py\nindex 1..2 100644\n--- a/m.py\n+++ b/m.py\n@@ -7,1 +7,1 @@\n-a = 1\n+a = 2\n"
    assert normalize_patch(one) == normalize_patch(two)
    assert normalize_patch(one) != normalize_patch(two.replace("+a = 2", "+a = 3"))


def test_choose_prefers_the_reproduction_then_the_majority_then_the_first() -> None:
    def cands() -> list[Candidate]:
        return [
            Candidate("fix0", "p-wrong", key="wrong", repro_passed=False),
            Candidate("fix1", "p-right", key="right", repro_passed=True),
            Candidate("fix2", "p-wrong", key="wrong", repro_passed=False),
            Candidate("fix3", "", error="does not apply"),
        ]

    picked = choose(cands(), informative=True)
    assert picked is not None and picked.source == "fix1"
    picked = choose(cands(), informative=False)  # the reproduction cannot tell: 2 votes beat 1
    assert picked is not None and picked.source == "fix0" and picked.votes == 2
    tie = [Candidate("fix0", "a", key="a"), Candidate("fix1", "b", key="b")]
    picked = choose(tie, informative=False)
    assert picked is not None and picked.source == "fix0"
    assert choose([Candidate("fix0", "", error="x")], informative=True) is None


def test_ranker_runs_the_reproduction_test_on_each_candidate(mini: MiniSuite, tmp_path: Path) -> None:
    inst = next(i for i in mini.instances if i.name == "slugkit")
    checkout = tmp_path / "co"
    sha = checkout_at(mini.repos / inst.name, inst.base_commit, checkout)
    git_apply(checkout, inst.test_patch)  # the reproducer's work: a failing test in the checkout
    gold = parse_fix(json.dumps({"edits": diff_to_edits(inst.patch)}))
    wrong_edit = {"file": "slugkit/slug.py", "search": "    out = []\n", "replace": "    out = list()\n"}
    wrong = parse_fix(json.dumps({"edits": [wrong_edit]}))
    fixes = [("fix0", wrong), ("fix1", wrong), ("fix2", gold), ("fix3", None)]
    result = rank(checkout, sha, fixes, ["tests/test_slug.py"], scratch_root=tmp_path / "scratch", timeout_s=60)
    assert result.reproduction_fails_on_base is True
    assert result.chosen == "fix2" and normalize_patch(result.patch) == normalize_patch(inst.patch)
    assert [c.repro_passed for c in result.candidates] == [False, False, True, None]
    assert result.candidates[3].error == "the fixer gave no fix"
    assert "tests/test_slug.py" not in result.patch  # the reproduction test is not part of the prediction
    # without a reproduction test the majority decides: the two equal wrong candidates win
    result = rank(checkout, sha, fixes, [], scratch_root=tmp_path / "scratch", timeout_s=60)
    assert result.chosen == "fix0" and result.candidates[0].votes == 2
    assert not list((tmp_path / "scratch").iterdir())  # throwaway worktrees are removed


def test_plan_is_the_masai_chain_with_n_candidates(mini: MiniSuite) -> None:
    plan = masai_plan(mini.instances[0], 4)
    by_id = plan.by_id()
    assert {s.role for s in plan.subtasks} == set(ROLES)
    assert [s.id for s in plan.subtasks if s.role == "fixer"] == ["fix0", "fix1", "fix2", "fix3"]
    assert by_id["reproduce"].depends_on == ["test_template"]
    assert by_id["fix2"].depends_on == ["reproduce", "localize"]
    assert by_id["rank"].depends_on == ["reproduce", "fix0", "fix1", "fix2", "fix3"]
    assert plan.sinks() == ["rank"]
    assert mini.instances[0].problem_statement.strip() in by_id["fix0"].instruction


async def test_simulated_run_reaches_the_known_score_and_resumes(mini: MiniSuite, tmp_path: Path) -> None:
    ids = [i.instance_id for i in mini.instances]
    solved = {ids[0], ids[2], ids[4]}
    scripts = {ids[1]: ["gold", "wrong", "wrong"]}  # gold once against two equal wrong: the reproduction decides
    model = Counting(simulated_swebench_model(mini.instances, solved=solved, scripts=scripts, seed=3))
    out = tmp_path / "run"
    summary, report = await run_swebench(
        mini.instances, mini.repos, out, model, model_name="sim", options=OPTS, workers=2, progress=False
    )
    assert report is not None
    assert set(report.resolved_ids) == {*solved, ids[1]}
    assert summary.resolved == 4 and summary.finished == len(ids) and summary.errors == 0
    assert summary.resolved_rate == pytest.approx(4 / len(ids))
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(p["instance_id"] for p in preds) == sorted(ids)
    assert all(set(p) == {"instance_id", "model_name_or_path", "model_patch"} for p in preds)
    for p in preds:
        inst = next(i for i in mini.instances if i.instance_id == p["instance_id"])
        gold = normalize_patch(p["model_patch"]) == normalize_patch(inst.patch)
        assert gold == (p["instance_id"] in report.resolved_ids)
    traj = json.loads((out / "trajectories" / f"{ids[1]}.json").read_text())
    assert traj["ranker"]["chosen"] == "fix0" and traj["ranker"]["reproduction_fails_on_base"] is True
    assert traj["modules"]["reproduce"]["tool_calls"] == 2 and traj["modules"]["test_template"]["tool_calls"] == 1
    unsolved = json.loads((out / "trajectories" / f"{ids[3]}.json").read_text())
    assert unsolved["modules"]["fix2"]["status"] == "failed" and "VoteFailed" in unsolved["modules"]["fix2"]["error"]
    assert (out / "trajectories" / f"{ids[1]}.events.jsonl").read_text().count('"kind": "subtask_finished"') >= 6
    assert json.loads((out / "summary.json").read_text())["resolved"] == 4
    assert not (out / "work").exists()
    calls = model.calls
    with pytest.raises(ConfigError, match="pass --resume"):
        await run_swebench(mini.instances, mini.repos, out, model, model_name="sim", options=OPTS, progress=False)
    again, report2 = await run_swebench(
        mini.instances, mini.repos, out, model, model_name="sim", options=OPTS, resume=True, progress=False
    )
    assert model.calls == calls  # every instance was finished: nothing ran again
    assert again.resumed == len(ids) and again.resolved == 4
    assert report2 is not None and report2.resolved_ids == report.resolved_ids
    assert len((out / "predictions.jsonl").read_text().splitlines()) == len(ids)


async def test_an_instance_that_cannot_be_checked_out_is_an_error_retried_on_resume(
    mini: MiniSuite, tmp_path: Path
) -> None:
    good = mini.instances[4]
    bad = mini.instances[5].model_copy(update={"base_commit": "0" * 40})
    model = simulated_swebench_model(mini.instances, scripts={good.instance_id: ["gold"], bad.instance_id: ["gold"]})
    opts = PipelineOptions(candidates=1, max_samples=2, retries=0)
    out = tmp_path / "run"
    summary, report = await run_swebench(
        [good, bad], mini.repos, out, model, model_name="s", options=opts, progress=False
    )
    assert summary.errors == 1 and summary.finished == 1 and summary.resolved == 1
    (failed,) = [r for r in summary.per_instance if r.status == "error"]
    assert failed.instance_id == bad.instance_id
    assert f"commit {'0' * 40} is not in the repository" in (failed.error or "")
    assert report is not None and report.resolved_ids == [good.instance_id]
    assert report.incomplete_ids == [bad.instance_id]
    assert list(load_predictions(out / "predictions.jsonl")) == [good.instance_id]  # not recorded: resume retries it
    again, _ = await run_swebench(
        [good, mini.instances[5]], mini.repos, out, model, model_name="s", options=opts, resume=True, progress=False
    )
    assert again.resumed == 1 and again.finished == 2 and again.errors == 0 and again.resolved == 2


def test_cli_run_with_the_simulated_model(mini: MiniSuite, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = [mini.instances[3].instance_id]
    out = tmp_path / "cli"
    argv = ["bench", "swebench", "--instances", str(mini.instances_file), "--repos", str(mini.repos)]
    argv += ["--ids", ",".join(ids), "--model", "simulated", "--solve-rate", "1", "--out", str(out)]
    assert main([*argv, "--max-samples", "4", "--candidates", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "resolved 1/1 (100.0%)" in printed and ids[0] in printed
    report = json.loads((out / "report.json").read_text())
    assert report["resolved_ids"] == ids
    traj = json.loads((out / "trajectories" / f"{ids[0]}.json").read_text())
    assert sorted(s for s in traj["modules"] if s.startswith("fix")) == ["fix0", "fix1"]
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--candidates", "0", "--no-progress", "--resume"])
    assert stop.value.code == 2
    assert "argument --candidates: expected an integer >= 1, got 0" in capsys.readouterr().err
