"""A programmatic Hanoi solver that follows the prompt's strategy: the oracle of the simulated model."""

from __future__ import annotations

import random
from collections.abc import Sequence

from mdap.models import SimulatedModel, perturb_digit
from mdap.types import Message

from .task import HanoiState, Move, Pegs, format_answer, state_from_prompt

__all__ = ["apply_move", "hanoi_oracle", "hanoi_wrong_answer", "legal_moves", "simulated_hanoi_model", "strategy_move"]


def apply_move(pegs: Pegs, move: Move) -> Pegs:
    """The pegs after ``move`` (no legality check)."""
    _, src, dst = move
    out = list(pegs)
    out[dst] = out[dst] + (out[src][-1],)
    out[src] = out[src][:-1]
    return (out[0], out[1], out[2])


def legal_moves(pegs: Pegs) -> list[Move]:
    """Every legal move in a state."""
    moves = []
    for src in range(3):
        if not pegs[src]:
            continue
        disk = pegs[src][-1]
        for dst in range(3):
            if dst != src and (not pegs[dst] or pegs[dst][-1] > disk):
                moves.append((disk, src, dst))
    return moves


def strategy_move(state: HanoiState) -> Move:
    """The move the prompt's strategy prescribes (disk 1 clockwise, else the one legal other move)."""
    pegs = state.pegs
    one = next(i for i in range(3) if pegs[i] and pegs[i][-1] == 1)
    if state.prev is None or state.prev[0] != 1:
        return (1, one, (one + 1) % 3)
    a, b = (one + 1) % 3, (one + 2) % 3
    if not pegs[a] and not pegs[b]:  # every disk under disk 1: only reachable after a wrong move
        return (1, one, (one + 1) % 3)
    if not pegs[a] or (pegs[b] and pegs[b][-1] < pegs[a][-1]):
        a, b = b, a
    return (pegs[a][-1], a, b)


def hanoi_oracle(messages: Sequence[Message]) -> str:
    """The right answer text for a Hanoi prompt: read the state back from the prompt and solve it."""
    state = state_from_prompt(messages)
    move = strategy_move(state)
    return format_answer(move, apply_move(state.pegs, move))


def hanoi_wrong_answer(messages: Sequence[Message], correct: str, rng: random.Random) -> str:
    """A plausible wrong answer: another legal move with its consistent next state."""
    state = state_from_prompt(messages)
    right = strategy_move(state)
    others = [m for m in legal_moves(state.pegs) if m != right]
    if not others:
        return perturb_digit(messages, correct, rng)
    move = rng.choice(others)
    return format_answer(move, apply_move(state.pegs, move))


def simulated_hanoi_model(
    *,
    error_rate: float = 0.0,
    red_flag_rate: float = 0.0,
    correlation: float = 0.0,
    latency_s: float = 0.0,
    seed: int = 0,
) -> SimulatedModel:
    """A SimulatedModel that plays Hanoi with the given per-sample error rate (wrong = another legal move)."""
    return SimulatedModel(
        hanoi_oracle,
        error_rate=error_rate,
        red_flag_rate=red_flag_rate,
        correlation=correlation,
        wrong=hanoi_wrong_answer,
        latency_s=latency_s,
        seed=seed,
    )
