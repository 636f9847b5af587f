"""Towers of Hanoi as a chain of microsteps, in the MAKER setup.

The state is three pegs, each a list of disks from bottom to top (disk 1 is the smallest), plus the previous
move. The prompt states the rules and the strategy; the model answers with the move and the state after it::

    move = [disk, from, to]
    next_state = [[...], [...], [...]]

The parser is strict: anything off (extra text, wrong shape, a disk missing or duplicated) is a red flag.
Its answer-preserving views (:class:`PegRotation`: rotate the peg labels, map the answer back) serve decorrelated
sampling (``HanoiStep.transforms``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from mdap.errors import ConfigError, RedFlag
from mdap.jsontext import loads_json
from mdap.microstep import Microstep
from mdap.types import Message

__all__ = [
    "SYSTEM_PROMPT",
    "HanoiAnswer",
    "HanoiState",
    "HanoiStep",
    "PegRotation",
    "format_answer",
    "format_pegs",
    "parse_pegs",
    "peg_rotations",
    "rotate_answer",
    "rotate_state",
    "state_from_prompt",
]

Pegs = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
Move = tuple[int, int, int]

SYSTEM_PROMPT = """\
You are playing the Towers of Hanoi, one move at a time.
There are three pegs, numbered 0, 1 and 2, and disks numbered from 1 (smallest) upward.
A state lists the disks on each peg from bottom to top, e.g. [[3, 2], [1], []].
Rules: move one disk at a time; move only the top disk of a peg; never put a disk on a smaller disk.
Strategy: if the previous move did not move disk 1 (or there was no previous move), move disk 1 one peg
clockwise (0 -> 1, 1 -> 2, 2 -> 0). Otherwise, make the only legal move that does not move disk 1.
Reply with exactly two lines and nothing else:
move = [disk, from, to]
next_state = [[...], [...], [...]]"""

_ANSWER = re.compile(r"move = \[(\d+), (\d+), (\d+)\]\nnext_state = (\[.*\])")


class HanoiState(NamedTuple):
    """The pegs (bottom to top) and the previous move (None before the first move)."""

    pegs: Pegs
    prev: Move | None


class HanoiAnswer(NamedTuple):
    """A parsed answer: the move and the claimed state after it. Hashable, so it votes as itself."""

    move: Move
    next_state: Pegs


def format_pegs(pegs: Pegs) -> str:
    """Pegs as the prompt shows them: ``[[3, 2], [1], []]``."""
    return "[" + ", ".join("[" + ", ".join(map(str, peg)) + "]" for peg in pegs) + "]"


def format_answer(move: Move, pegs: Pegs) -> str:
    """An answer in the strict output format."""
    return f"move = [{move[0]}, {move[1]}, {move[2]}]\nnext_state = {format_pegs(pegs)}"


def parse_pegs(text: str, disks: int) -> Pegs:
    """Parse ``[[..], [..], [..]]`` holding each of the disks 1..disks exactly once.

    Raises:
        RedFlag: anything else (kind ``"parse"``).
    """
    try:
        raw = loads_json(text)
    except ValueError:
        raise RedFlag("parse", "next_state is not a JSON list") from None
    if not isinstance(raw, list) or len(raw) != 3 or not all(isinstance(p, list) for p in raw):
        raise RedFlag("parse", "next_state must be a list of three lists")
    seen = 0
    count = 0
    for peg in raw:
        for d in peg:
            if type(d) is not int or not 1 <= d <= disks:
                raise RedFlag("parse", f"next_state holds {d!r}, not a disk 1..{disks}")
            seen |= 1 << d
            count += 1
    if count != disks or seen != (1 << (disks + 1)) - 2:
        raise RedFlag("parse", f"next_state must hold each disk 1..{disks} exactly once")
    return (tuple(raw[0]), tuple(raw[1]), tuple(raw[2]))


class HanoiStep(Microstep[HanoiState, HanoiAnswer]):
    """The Hanoi microstep for ``disks`` disks (see the module docstring).

    Its states and answers are tuples (hashable, compared by value), so it writes its own JSON forms.

    Raises:
        ConfigError: disks < 1.
    """

    def __init__(self, disks: int) -> None:
        if not isinstance(disks, int) or disks < 1:
            raise ConfigError(f"disks must be a positive integer, got {disks!r}")
        self.disks = disks
        self.fingerprint = f"hanoi:{disks}"
        self._system: Message = {"role": "system", "content": SYSTEM_PROMPT}

    @property
    def steps(self) -> int:
        """Moves of the optimal solution: 2^disks - 1."""
        return (1 << self.disks) - 1

    @property
    def transforms(self) -> tuple[Any, ...]:
        """Answer-preserving views of a prompt for decorrelated sampling: the three peg rotations."""
        return peg_rotations()

    def initial(self) -> HanoiState:
        """All disks on peg 0."""
        return HanoiState((tuple(range(self.disks, 0, -1)), (), ()), None)

    def render(self, state: HanoiState) -> list[Message]:
        """System prompt (rules, strategy, format) and the state as the user message."""
        prev = state.prev
        prev_text = f"[{prev[0]}, {prev[1]}, {prev[2]}]" if prev else "none"
        user: Message = {
            "role": "user",
            "content": f"Previous move: {prev_text}\nCurrent state: {format_pegs(state.pegs)}",
        }
        return [self._system, user]

    def parse(self, text: str) -> HanoiAnswer:
        """Strictly parse a sample (exactly the two answer lines, optional surrounding whitespace)."""
        m = _ANSWER.fullmatch(text.strip())
        if m is None:
            raise RedFlag("parse", "answer is not exactly 'move = [d, f, t]' then 'next_state = [...]'")
        disk, src, dst = int(m[1]), int(m[2]), int(m[3])
        if not 1 <= disk <= self.disks or src > 2 or dst > 2 or src == dst:
            raise RedFlag("parse", f"move [{disk}, {src}, {dst}] names no disk or pegs")
        return HanoiAnswer((disk, src, dst), parse_pegs(m[4], self.disks))

    def apply(self, state: HanoiState, answer: HanoiAnswer) -> HanoiState:
        """MAKER: the model's claimed next_state becomes the state (wrong claims are the verifier's job)."""
        return HanoiState(answer.next_state, answer.move)

    def dump_state(self, state: HanoiState) -> dict[str, Any]:
        """JSON-able state for checkpoints."""
        return {"pegs": [list(p) for p in state.pegs], "prev": list(state.prev) if state.prev else None}

    def load_state(self, data: Any) -> HanoiState:
        """Inverse of :meth:`dump_state`."""
        try:
            p0, p1, p2 = (tuple(int(d) for d in peg) for peg in data["pegs"])
            prev = data["prev"]
            move: Move | None = (int(prev[0]), int(prev[1]), int(prev[2])) if prev else None
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"not a Hanoi state: {data!r}") from err
        return HanoiState((p0, p1, p2), move)

    def dump_answer(self, answer: HanoiAnswer) -> dict[str, Any]:
        """JSON-able answer for the trace."""
        return {"move": list(answer.move), "next_state": [list(p) for p in answer.next_state]}

    def load_answer(self, data: Any) -> HanoiAnswer:
        """Inverse of :meth:`dump_answer` (a pool worker's answer back into an answer).

        Raises:
            ConfigError: not a Hanoi answer.
        """
        try:
            disk, src, dst = (int(x) for x in data["move"])
            p0, p1, p2 = (tuple(int(d) for d in peg) for peg in data["next_state"])
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"not a Hanoi answer: {data!r}") from err
        return HanoiAnswer((disk, src, dst), (p0, p1, p2))


def state_from_prompt(messages: Sequence[Message]) -> HanoiState:
    """The state a Hanoi prompt shows (its last message), read back."""
    content = messages[-1]["content"]
    head, _, state = content.rpartition("\nCurrent state: ")
    prev_text = head.rpartition("Previous move: ")[2]
    prev = None if prev_text == "none" else tuple(json.loads(prev_text))
    raw = json.loads(state)
    return HanoiState((tuple(raw[0]), tuple(raw[1]), tuple(raw[2])), prev)


# ---- Answer-preserving views: rotate the peg labels, then map the answer back ----------------------------------
# The prompt's strategy moves disk 1 clockwise (0 -> 1 -> 2 -> 0), so only relabellings that keep the cyclic order
# preserve the answer: the rotations ``i -> i + shift (mod 3)``. Under a rotation the right move ``[d, f, t]``
# becomes ``[d, f + shift, t + shift]`` and the next state is rotated the same way; mapping back rotates by
# ``-shift``.


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
        state = state_from_prompt(messages)
        disks = sum(len(p) for p in state.pegs)
        rendered = HanoiStep(disks).render(rotate_state(state, self.shift))
        return [*messages[:-1], rendered[-1]]

    def back(self, answer: HanoiAnswer) -> HanoiAnswer:
        """An answer to the rotated prompt in the original labels."""
        return rotate_answer(answer, -self.shift % 3)


def peg_rotations() -> tuple[PegRotation, PegRotation, PegRotation]:
    """The three answer-preserving views of a Hanoi prompt (the identity first)."""
    return (PegRotation(0), PegRotation(1), PegRotation(2))
