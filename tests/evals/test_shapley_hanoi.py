"""The Hanoi attribution game and attribution config files (JSON and TOML)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mdap.errors import ConfigError
from mdap.evals.attribution import attribute, hanoi_game, load_config
from mdap.evals.hanoi import HanoiState, strategy_move

EXAMPLE = Path(__file__).resolve().parents[2] / "evals" / "data" / "attribution" / "hanoi.json"


def test_hanoi_slots_with_known_effects() -> None:
    # Every wrong answer is over-long, so red flags discard them all: with red flags on OR a perfect model every
    # run is solved; with neither (k=1, 30% wrong) almost none is. The temperature slot changes nothing the
    # simulated model looks at (it ignores temperature > 0): a dummy.
    game = hanoi_game(
        {
            "red_flags": {"default": {"red_flags": False}, "test": {"red_flags": True}},
            "model": {"default": {"error_rate": 0.3}, "test": {"error_rate": 0.0}},
            "temperature": {"default": {"temperature": 0.1}, "test": {"temperature": 0.7}},
        },
        base={"disks": 4, "k": 1, "long_wrong_share": 1.0},
        runs=3,
        seeds=[0, 1],
    )
    report = attribute(game, parallel=2)
    by = {tuple(c.coalition): c.value.mean for c in report.coalitions}
    assert by[("red_flags",)] == 1.0
    assert by[("model",)] == 1.0
    assert by[()] < 0.5
    assert report.shapley["temperature"].mean == 0.0
    assert report.shapley["red_flags"].mean == pytest.approx(report.shapley["model"].mean)
    assert report.shapley["red_flags"].mean == pytest.approx((1.0 - by[()]) / 2)
    assert report.efficiency_gap == pytest.approx(0.0, abs=1e-12)
    inter = {i.pair: i.index.mean for i in report.interactions}
    assert inter[("red_flags", "model")] < 0  # either one alone is enough: substitutes


def test_without_long_wrong_answers_red_flags_are_a_dummy() -> None:
    # The simulated model's own red-flag samples never parse, so red flags off or on decide the same votes.
    game = hanoi_game(
        {"red_flags": {"default": {"red_flags": False}, "test": {"red_flags": True}}},
        base={"disks": 4, "k": 1, "error_rate": 0.03, "red_flag_rate": 0.2},
        runs=4,
        seeds=[0],
    )
    report = attribute(game)
    assert report.shapley["red_flags"].mean == 0.0


def test_strategy_move_when_disk_one_sits_on_every_disk() -> None:
    # Reachable only after a wrong move; it used to raise IndexError inside the simulated model's oracle.
    move = strategy_move(HanoiState(((3, 2, 1), (), ()), (1, 2, 0)))
    assert move == (1, 0, 1)


@pytest.mark.parametrize(
    ("slots", "base", "runs", "message"),
    [
        ({"voter": {"default": {"k": 1}, "test": {"kk": 2}}}, {}, 2, "kk"),
        ({"voter": {"default": {"k": 1}, "test": {"k": 0}}}, {}, 2, "k must be >= 1"),
        ({"voter": {"default": {"k": 1}, "test": 3}}, {}, 2, "must be a dict of Hanoi settings"),
        ({"voter": {"default": {"k": 1}, "test": {"seed": 2}}}, {}, 2, "set per run"),
        ({"a": {"default": {"k": 1}, "test": {"k": 2}}, "b": {"default": {"k": 1}, "test": {}}}, {}, 2, "both set"),
        ({"voter": {"default": {"k": 1}, "test": {"k": 2}}}, {"long_wrong_share": 2}, 2, "between 0 and 1"),
        ({"voter": {"default": {"k": 1}, "test": {"k": 2}}}, {}, 0, "between 1 and 1000 runs"),
        ({"voter": {"default": {"k": 1}}}, {}, 2, "no test variant"),
    ],
)
def test_bad_hanoi_games_are_config_errors(
    slots: dict[str, Any], base: dict[str, Any], runs: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        hanoi_game(slots, base=base, runs=runs)


def test_the_example_config_is_the_three_slot_hanoi_attribution() -> None:
    cfg = load_config(EXAMPLE)
    game = cfg.game()
    assert game.players == ["voter", "red_flags", "model"]
    assert len(game.benchmark) >= 10
    assert len(game.seeds) >= 3
    assert game.slots.variants({"voter"})["voter"] == {"k": "auto"}


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


TINY: dict[str, Any] = {
    "name": "tiny",
    "pipeline": "hanoi",
    "base": {"disks": 3},
    "slots": {"voter": {"default": {"k": 1}, "test": {"k": 2}}},
    "benchmark": {"runs": 2},
}


def test_toml_and_json_configs_read_alike(tmp_path: Path) -> None:
    toml = tmp_path / "a.toml"
    toml.write_text(
        'name = "tiny"\npipeline = "hanoi"\nbase = { disks = 3 }\nbenchmark = { runs = 2 }\n'
        "[slots.voter]\ndefault = { k = 1 }\ntest = { k = 2 }\n"
    )
    assert load_config(toml) == load_config(_write(tmp_path / "a.json", TINY))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pipeline": "gaia-nope"}, "unknown pipeline 'gaia-nope'"),
        ({"benchmark": {"runs": 0}}, "benchmark is empty"),
        ({"benchmark": {}}, "needs 'runs'"),
        ({"benchmark": {"runs": 2, "disks": 3}}, "unknown keys"),
        ({"slots": {}}, "at least one slot"),
        ({"slots": {"voter": {"default": {"k": 1}}}}, "slot 'voter' has no test variant"),
        ({"seeds": []}, "at least one seed"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    path = _write(tmp_path / "c.json", {**TINY, **change})
    with pytest.raises(ConfigError, match=message):
        load_config(path).game()


def test_unreadable_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.json")
    (tmp_path / "c.yaml").write_text("name: x\n")
    with pytest.raises(ConfigError, match=r"use a \.json or \.toml file"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="cannot read attribution config"):
        load_config(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="colour"):
        load_config(_write(tmp_path / "x.json", {**TINY, "colour": "red"}))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="top level"):
        load_config(tmp_path / "list.json")
