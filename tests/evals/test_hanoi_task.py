"""Hanoi: the strict parser, the strategy solver against the independent verifier, the simulated oracle."""

from __future__ import annotations

import random

import pytest

from mdap.errors import ConfigError, RedFlag
from mdap.evals.hanoi import (
    HanoiAnswer,
    HanoiState,
    HanoiStep,
    format_answer,
    hanoi_oracle,
    hanoi_wrong_answer,
    optimal_move,
    strategy_move,
    verify_step,
)
from mdap.evals.hanoi.solver import apply_move, legal_moves

STEP = HanoiStep(3)


def test_parses_the_strict_format() -> None:
    answer = STEP.parse("move = [1, 0, 1]\nnext_state = [[3, 2], [1], []]")
    assert answer == HanoiAnswer((1, 0, 1), ((3, 2), (1,), ()))
    assert STEP.parse("  move = [1, 0, 1]\nnext_state = [[3, 2], [1], []]\n") == answer


@pytest.mark.parametrize(
    "text",
    [
        "",
        "move = [1, 0, 1]",  # no next_state
        "Sure! move = [1, 0, 1]\nnext_state = [[3, 2], [1], []]",  # extra text
        "move = [1, 0, 1]\nnext_state = [[3, 2], [1], []]\nI hope this helps",
        "move = [1,0,1]\nnext_state = [[3, 2], [1], []]",  # spacing off
        "move = [1, 0, 1]\nnext_state = [[3, 2], [1]]",  # two pegs
        "move = [1, 0, 1]\nnext_state = [[3, 2], [1], [], []]",  # four pegs
        "move = [1, 0, 1]\nnext_state = [[3], [1], []]",  # disk missing
        "move = [1, 0, 1]\nnext_state = [[3, 2, 2], [1], []]",  # duplicated
        "move = [1, 0, 1]\nnext_state = [[3, 2], [1], [4]]",  # no such disk
        "move = [1, 0, 1]\nnext_state = [[3, 2], [1.0], []]",  # not an int
        "move = [1, 0, 1]\nnext_state = [[3, 2], [true], []]",
        "move = [1, 0, 1]\nnext_state = [[3, 2], [1], []",  # broken JSON
        'move = [1, 0, 1]\nnext_state = {"a": 1}',
        "move = [4, 0, 1]\nnext_state = [[3, 2], [1], []]",  # no disk 4
        "move = [1, 0, 3]\nnext_state = [[3, 2], [1], []]",  # no peg 3
        "move = [1, 1, 1]\nnext_state = [[3, 2], [1], []]",  # from == to
    ],
)
def test_red_flags_anything_off(text: str) -> None:
    with pytest.raises(RedFlag) as info:
        STEP.parse(text)
    assert info.value.kind == "parse"


@pytest.mark.parametrize("disks", range(1, 11))
def test_strategy_solver_and_independent_verifier_agree(disks: int) -> None:
    ms = HanoiStep(disks)
    state = ms.initial()
    for step in range(ms.steps):
        move = strategy_move(state)
        answer = HanoiAnswer(move, apply_move(state.pegs, move))
        assert verify_step(step, state, answer) is None
        state = ms.apply(state, answer)
    goal = 2 if disks % 2 == 0 else 1  # disk 1 clockwise puts an even tower on peg 2, an odd one on peg 1
    assert state.pegs[goal] == tuple(range(disks, 0, -1))


def test_verifier_rejects_wrong_illegal_and_inconsistent_answers() -> None:
    state = HanoiStep(3).initial()
    assert "not the optimal move" in (verify_step(0, state, HanoiAnswer((1, 0, 2), ((3, 2), (), (1,)))) or "")
    assert "does not follow" in (verify_step(0, state, HanoiAnswer((1, 0, 1), ((3, 2), (), (1,)))) or "")
    after = HanoiState(((3, 2), (1,), ()), (1, 0, 1))
    assert verify_step(1, after, HanoiAnswer((2, 0, 2), ((3,), (1,), (2,)))) is None
    bad = HanoiState(((3,), (1,), (2,)), (1, 0, 1))  # disk 2 is not on peg 0 here
    assert "not on top" in (verify_step(1, bad, HanoiAnswer((2, 0, 2), ((3,), (1,), (2,)))) or "")
    with pytest.raises(ValueError, match="from 1"):
        optimal_move(0)


def test_prompt_round_trips_through_the_oracle() -> None:
    ms = HanoiStep(5)
    state = ms.initial()
    for _ in range(20):
        text = hanoi_oracle(ms.render(state))
        answer = ms.parse(text)
        assert answer.move == strategy_move(state)
        state = ms.apply(state, answer)
    assert "Previous move: none" in ms.render(ms.initial())[1]["content"]


def test_wrong_answers_are_legal_but_not_the_strategy() -> None:
    ms = HanoiStep(4)
    state = HanoiState(((4, 3), (1,), (2,)), (1, 0, 1))
    messages = ms.render(state)
    rng = random.Random(0)
    right = hanoi_oracle(messages)
    for _ in range(20):
        wrong = ms.parse(hanoi_wrong_answer(messages, right, rng))
        assert wrong.move != strategy_move(state)
        assert wrong.move in legal_moves(state.pegs)


def test_state_round_trips_and_bad_disks_are_refused() -> None:
    ms = HanoiStep(4)
    state = HanoiState(((4, 3), (1,), (2,)), (1, 0, 1))
    assert ms.load_state(ms.dump_state(state)) == state
    assert format_answer((1, 0, 1), state.pegs).startswith("move = [1, 0, 1]\n")
    for bad in (0, -3):
        with pytest.raises(ConfigError, match="disks must be a positive integer"):
            HanoiStep(bad)
