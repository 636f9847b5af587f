"""`mdap attribute CONFIG` as a user runs it: the table, the outputs, resuming from the cache, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdap.cli import main

CONFIG = {
    "name": "tiny-hanoi",
    "pipeline": "hanoi",
    "base": {"disks": 3, "error_rate": 0.2, "long_wrong_share": 0.5},
    "slots": {
        "voter": {"default": {"k": 1}, "test": {"k": 3}},
        "red_flags": {"default": {"red_flags": False}, "test": {"red_flags": True}},
    },
    "benchmark": {"runs": 3},
    "seeds": [0, 1],
}


def _config(tmp_path: Path, **change: object) -> Path:
    path = tmp_path / "attr.json"
    path.write_text(json.dumps({**CONFIG, **change}))
    return path


def test_prints_the_table_and_writes_every_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["attribute", str(_config(tmp_path)), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Shapley" in text and "voter x red_flags" in text and "8 unit(s) scored, 0 from cache" in text
    report = json.loads((out / "report.json").read_text())
    assert set(report["shapley"]) == {"voter", "red_flags"}
    assert len(report["coalitions"]) == 4
    assert abs(report["efficiency_gap"]) < 1e-12
    assert (out / "attribution.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "scores.csv").read_text().splitlines()) == 1 + 4 * 2
    assert len((out / "scores.jsonl").read_text().splitlines()) == 1 + 4 * 2

    assert main(["attribute", str(_config(tmp_path)), "--out", str(out), "--no-progress", "--no-plot"]) == 0
    assert "0 unit(s) scored, 8 from cache" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["shapley"] == report["shapley"]

    assert main(["attribute", str(_config(tmp_path)), "--out", str(out), "--no-progress", "--fresh"]) == 0
    assert "8 unit(s) scored, 0 from cache" in capsys.readouterr().out


def test_the_output_directory_comes_from_the_config(tmp_path: Path) -> None:
    out = tmp_path / "from-config"
    assert main(["attribute", str(_config(tmp_path, output=str(out))), "--no-progress", "--no-plot"]) == 0
    assert (out / "report.json").is_file()
    assert not (out / "attribution.png").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"benchmark": {"runs": 0}}, "benchmark is empty"),
        ({"slots": {"voter": {"test": {"k": 2}}}}, "slot 'voter' has no default variant"),
        ({"parallel": 0}, "parallel"),
    ],
)
def test_bad_configs_exit_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object], message: str
) -> None:
    assert main(["attribute", str(_config(tmp_path, **change)), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_a_cache_from_another_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["attribute", str(_config(tmp_path)), "--out", str(out), "--no-progress", "--no-plot"]) == 0
    changed = _config(tmp_path, base={"disks": 4})
    assert main(["attribute", str(changed), "--out", str(out), "--no-progress", "--no-plot"]) == 2
    assert "written for another game" in capsys.readouterr().err


def test_sampled_method_from_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, method="sampled", max_evaluations=4, seeds=[0])
    assert main(["attribute", str(path), "--out", str(tmp_path / "s"), "--no-progress", "--no-plot"]) == 0
    assert "sampling:" in capsys.readouterr().out
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    assert report["method"] == "sampled"
    assert report["sampling"]["evaluations"] == 4  # both players: every coalition, each scored once
    assert report["banzhaf"] is None
    assert all(e["low"] <= e["mean"] <= e["high"] for e in report["shapley"].values())
