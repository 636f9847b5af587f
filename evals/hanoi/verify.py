"""An independent verifier: checks every decided move against the rules and the optimal solution.

It does not share code with the solver: the optimal move of step t is computed in closed form from t's bits
(disk = 1 + trailing zeros of t; pegs from the classic formula, mirrored so that disk 1 moves clockwise).
"""

from __future__ import annotations

from .task import HanoiAnswer, HanoiState

__all__ = ["optimal_move", "verify_step"]

_CLOCKWISE = (0, 2, 1)  # the classic formula moves disk 1 as 0 -> 2 -> 1; mirror pegs 1 and 2


def optimal_move(t: int) -> tuple[int, int, int]:
    """The t-th move (1-based) of the optimal solution in which disk 1 moves 0 -> 1 -> 2 -> 0."""
    if t < 1:
        raise ValueError(f"moves are numbered from 1, got {t}")
    disk = (t & -t).bit_length()
    src = (t & (t - 1)) % 3
    dst = ((t | (t - 1)) + 1) % 3
    return (disk, _CLOCKWISE[src], _CLOCKWISE[dst])


def verify_step(step: int, state: HanoiState, answer: HanoiAnswer) -> str | None:
    """Check the decided answer of step ``step`` (0-based) given the state before it.

    Returns None if the move is the optimal one, legal in ``state``, and ``next_state`` is its result;
    otherwise what is wrong.
    """
    disk, src, dst = answer.move
    want = optimal_move(step + 1)
    if answer.move != want:
        return f"move {list(answer.move)} is not the optimal move {list(want)}"
    pegs = state.pegs
    if not pegs[src] or pegs[src][-1] != disk:
        return f"disk {disk} is not on top of peg {src}"
    if pegs[dst] and pegs[dst][-1] < disk:
        return f"disk {disk} would go on smaller disk {pegs[dst][-1]}"
    expect = [list(p) for p in pegs]
    expect[dst].append(expect[src].pop())
    if [list(p) for p in answer.next_state] != expect:
        return f"next_state {[list(p) for p in answer.next_state]} does not follow from the move"
    return None
