"""Training data for a worker adapter: from a run's trace or from a programmatic teacher.

Each example is the exact prompt the microagent saw and the decided answer in the strict output format. The
executor's trace stores each step's decided answer and its vote counts but not the prompt; the prompt is
rebuilt by replaying the chain (``render`` of the state, ``apply`` of the decided answer), which is exact
because the state after a step is a function of the state before it and the decided answer.

**Hard-example weighting.** A step whose vote needed many samples or disagreed is one the model finds hard:
its weight is ``1 + hard_weight * h``, where ``h`` is the share of the step's samples that did not vote for the
decided answer (wrong or red-flagged). Training draws examples in proportion to their weights.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from mdap.errors import ConfigError
from mdap.microstep import Microstep, Verifier
from mdap.models.lora_data import TrainingExample, example_key
from mdap.voters.diagnostics import read_trace

from ..hanoi.solver import apply_move, strategy_move
from ..hanoi.task import HanoiAnswer, HanoiStep, format_answer, rotate_answer, rotate_state
from ..hanoi.verify import verify_step

__all__ = [
    "dedup",
    "hanoi_answer_text",
    "hanoi_teacher",
    "hanoi_trace_examples",
    "hard_weight",
    "parse_disks",
    "reweight",
    "split_heldout",
    "trace_examples",
]


def hard_weight(samples: int, votes: Sequence[int], factor: float) -> float:
    """The weight of a traced step: ``1 + factor * (share of samples not voting for the decided answer)``."""
    if samples < 1 or not votes:
        return 1.0
    miss = max(0, samples - votes[0]) / samples
    return 1.0 + factor * miss


def hanoi_answer_text(answer: HanoiAnswer) -> str:
    """A Hanoi answer in the strict output format."""
    return format_answer(answer.move, answer.next_state)


def trace_examples(
    path: Path,
    microstep: Microstep[Any, Any],
    initial: Any,
    answer_text: Callable[[Any], str],
    *,
    factor: float = 4.0,
    verifier: Verifier[Any, Any] | None = None,
    name: str = "trace",
    extra: dict[str, Any] | None = None,
) -> list[TrainingExample]:
    """Examples from an executor trace, replaying the chain to rebuild each step's exact prompt.

    Args:
        path: the JSONL trace (``mdap hanoi --trace``).
        microstep, initial: the chain the trace was written for.
        answer_text: the strict output text of a decided answer.
        factor: hard-example factor (see the module docstring).
        verifier: when given, steps it rejects are left out (the chain is still replayed through them).
        name: prefix of the examples' ids.
        extra: more ``meta`` for every example (e.g. the task size).

    Raises:
        ConfigError: an unreadable trace, or steps out of order (the replay needs every step from 0).
    """
    out: list[TrainingExample] = []
    state = initial
    extra = extra or {}
    for expected, (_, record) in enumerate(read_trace(path, ("step", "answer", "samples", "votes"))):
        step = int(record["step"])
        if step != expected:
            raise ConfigError(f"{path}: step {step} follows step {expected - 1}; the replay needs every step in order")
        messages = microstep.render(state)
        answer = microstep.load_answer(record["answer"])
        if verifier is None or verifier(step, state, answer) is None:
            weight = hard_weight(int(record["samples"]), record["votes"], factor)
            meta = {"source": "trace", "step": step, "samples": record["samples"], "votes": record["votes"], **extra}
            out.append(
                TrainingExample.from_chat(
                    messages,
                    answer_text(answer),
                    id=f"{name}:{step}",
                    weight=weight,
                    group=f"{microstep.fingerprint}:{step}",
                    meta=meta,
                )
            )
        state = microstep.apply(state, answer)
    return out


def hanoi_trace_examples(path: Path, disks: int, *, factor: float = 4.0, verify: bool = True) -> list[TrainingExample]:
    """Examples from a Hanoi trace of ``disks`` disks (wrong moves left out when ``verify``)."""
    ms = HanoiStep(disks)
    return trace_examples(
        path, ms, ms.initial(), hanoi_answer_text, factor=factor, verifier=verify_step if verify else None,
        name=f"hanoi-trace:{disks}", extra={"disks": disks},
    )  # fmt: skip


def hanoi_teacher(disks: Iterable[int], *, rotations: bool = True) -> list[TrainingExample]:
    """Every state of the solved ``n``-disk trajectories, answered by the strategy solver.

    With ``rotations`` each state also appears with its pegs relabelled (the three rotations; one group, so a
    held-out split keeps them together).
    """
    out: list[TrainingExample] = []
    for n in disks:
        ms = HanoiStep(n)
        state = ms.initial()
        for step in range(ms.steps):
            move = strategy_move(state)
            answer = HanoiAnswer(move, apply_move(state.pegs, move))
            group = f"hanoi:{n}:{step}"
            for shift in (0, 1, 2) if rotations else (0,):
                view = rotate_state(state, shift)
                out.append(
                    TrainingExample.from_chat(
                        ms.render(view),
                        hanoi_answer_text(rotate_answer(answer, shift)),
                        id=f"{group}:r{shift}",
                        weight=1.0,
                        group=group,
                        meta={"source": "teacher", "disks": n, "step": step, "rotation": shift, "disk": move[0]},
                    )
                )
            state = ms.apply(state, answer)
    return out


def dedup(examples: Iterable[TrainingExample]) -> list[TrainingExample]:
    """Keep one example per prompt: the heaviest (a hard step seen twice stays hard); first seen on ties.

    Raises:
        ConfigError: one prompt with two different answers (the teacher or the trace contradicts itself).
    """
    kept: dict[str, TrainingExample] = {}
    for ex in examples:
        key = example_key(ex.messages)
        old = kept.get(key)
        if old is None:
            kept[key] = ex
            continue
        if old.completion != ex.completion:
            raise ConfigError(f"examples {old.id} and {ex.id} have the same prompt but different answers")
        if ex.weight > old.weight:
            kept[key] = ex
    return list(kept.values())


def split_heldout(
    examples: Sequence[TrainingExample], heldout: int, seed: int = 0
) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """Split off ``heldout`` groups at random (seeded); every example of a group lands on one side.

    Returns (train, held-out); the held-out side keeps only each group's first example (the original prompt,
    not its relabellings), since that is what an evaluation asks.

    Raises:
        ConfigError: ``heldout`` negative or not fewer than the groups.
    """
    groups = list(dict.fromkeys(ex.group or ex.id for ex in examples))
    if heldout < 0 or (heldout and heldout >= len(groups)):
        raise ConfigError(f"cannot hold out {heldout} of {len(groups)} groups: hold out fewer")
    chosen = set(random.Random(seed).sample(groups, heldout))
    train = [ex for ex in examples if (ex.group or ex.id) not in chosen]
    held: dict[str, TrainingExample] = {}
    for ex in examples:
        key = ex.group or ex.id
        if key in chosen and key not in held:
            held[key] = ex
    return train, list(held.values())


def reweight(examples: Sequence[TrainingExample], p_by_group: dict[str, float], factor: float) -> list[TrainingExample]:
    """Mine hard examples: every example of a group measured at per-sample correctness p gets weight
    ``1 + factor * (1 - p)`` (groups not measured keep their weight)."""
    out = []
    for ex in examples:
        p = p_by_group.get(ex.group or ex.id)
        out.append(ex if p is None else ex.model_copy(update={"weight": 1.0 + factor * (1.0 - p)}))
    return out


def parse_disks(text: str) -> list[int]:
    """``"3..8"`` -> [3, 4, 5, 6, 7, 8]; ``"3,5"`` -> [3, 5]; ``"6"`` -> [6].

    Raises:
        ConfigError: anything else, or a disk count outside 1..20.
    """
    try:
        if ".." in text:
            lo, hi = (int(x) for x in text.split("..", 1))
            values = list(range(lo, hi + 1))
        else:
            values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"disks must look like 3..8, 3,5 or 6, got {text!r}") from None
    if not values or any(not 1 <= v <= 20 for v in values):
        raise ConfigError(f"disks must be between 1 and 20 (a teacher trajectory has 2^disks - 1 states), got {text!r}")
    return values
