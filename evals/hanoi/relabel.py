"""Answer-preserving views of a Hanoi prompt: rotate the peg labels, then map the answer back.

The prompt's strategy moves disk 1 clockwise (0 -> 1 -> 2 -> 0), so only relabellings that keep the cyclic
order preserve the answer: the rotations ``i -> i + shift (mod 3)``. Under a rotation the right move
``[d, f, t]`` becomes ``[d, f + shift, t + shift]`` and the next state is rotated the same way; mapping back
rotates by ``-shift``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mdap.errors import ConfigError
from mdap.types import Message

from .solver import _state_from_prompt
from .task import HanoiAnswer, HanoiState, HanoiStep, Move, Pegs

__all__ = ["PegRotation", "peg_rotations", "rotate_answer", "rotate_state"]


def _rotate_pegs(pegs: Pegs, shift: int) -> Pegs:
    out: list[tuple[int, ...]] = [(), (), ()]
    for i, peg in enumerate(pegs):
        out[(i + shift) % 3] = peg
    return (out[0], out[1], out[2])


def _rotate_move(move: Move, shift: int) -> Move:
    return (move[0], (move[1] + shift) % 3, (move[2] + shift) % 3)


def rotate_state(state: HanoiState, shift: int) -> HanoiState:
    """The state with every peg label ``i`` renamed ``i + shift (mod 3)`` (the previous move too)."""
    return HanoiState(_rotate_pegs(state.pegs, shift), _rotate_move(state.prev, shift) if state.prev else None)


def rotate_answer(answer: HanoiAnswer, shift: int) -> HanoiAnswer:
    """The answer with every peg label ``i`` renamed ``i + shift (mod 3)``."""
    return HanoiAnswer(_rotate_move(answer.move, shift), _rotate_pegs(answer.next_state, shift))


@dataclass(frozen=True, slots=True)
class PegRotation:
    """The view of a Hanoi prompt with the pegs renamed ``i -> i + shift (mod 3)``.

    Raises:
        ConfigError: shift not in 0, 1, 2.
    """

    shift: int

    def __post_init__(self) -> None:
        if self.shift not in (0, 1, 2):
            raise ConfigError(f"a peg rotation shifts by 0, 1 or 2, got {self.shift!r}")

    @property
    def name(self) -> str:
        """``rotate+<shift>``."""
        return f"rotate+{self.shift}"

    def view(self, messages: Sequence[Message]) -> list[Message]:
        """The prompt rendered for the rotated state (the same system prompt, the rotated user message)."""
        state = _state_from_prompt(messages)
        disks = sum(len(p) for p in state.pegs)
        rendered = HanoiStep(disks).render(rotate_state(state, self.shift))
        return [*messages[:-1], rendered[-1]]

    def back(self, answer: HanoiAnswer) -> HanoiAnswer:
        """An answer to the rotated prompt in the original labels."""
        return rotate_answer(answer, -self.shift % 3)


def peg_rotations() -> tuple[PegRotation, PegRotation, PegRotation]:
    """The three answer-preserving views of a Hanoi prompt (the identity first)."""
    return (PegRotation(0), PegRotation(1), PegRotation(2))
