"""A simulated GAIA model for dry runs and tests: an oracle that knows the answers to a chosen subset.

It plays every part of the default pipeline: the planner (one solver step with the question), the solver (reads
the attachment with a tool call when there is one, then reports) and the answerer (``FINAL ANSWER: <truth>`` for
a known question, a wrong answer otherwise). With ``error_rate=0`` the run's score is exactly the fraction of
scored questions it knows; with ``error_rate > 0`` that share of final-answer samples is wrong (independent
wrong answers), which the answer vote has to correct. Plans and solver replies are never wrong: they are not
voted, and a wrong question in a plan would make the whole run an unknown question.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Collection, Sequence
from pathlib import Path

from mdap.errors import ConfigError
from mdap.models import SimulatedModel, perturb_digit
from mdap.planners import PLANNER_SYSTEM
from mdap.types import Message

from .loader import GaiaQuestion
from .pipeline import ANSWERER_PROMPT, SOLVER_PROMPT
from .scorer import normalize_number, score

__all__ = ["known_subset", "simulated_gaia_model", "wrong_answer"]

_PLANNER_HEAD = PLANNER_SYSTEM.split("\n", 1)[0][:60]


def known_subset(questions: Sequence[GaiaQuestion], fraction: float, *, seed: int = 0) -> frozenset[str]:
    """``round(fraction * len(questions))`` task ids, chosen by a seeded hash (the same for the same seed).

    Raises:
        ConfigError: ``fraction`` is outside [0, 1].
    """
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"the known fraction must be between 0 and 1, got {fraction!r}")
    ranked = sorted(questions, key=lambda q: (zlib.crc32(f"{seed}:{q.task_id}".encode()), q.task_id))
    return frozenset(q.task_id for q in ranked[: round(fraction * len(questions))])


def wrong_answer(truth: str) -> str:
    """An answer the scorer marks wrong for ``truth``: the number plus one, or the text with 'not ' in front."""
    number = normalize_number(truth)
    candidate = f"{number + 1:g}" if number is not None and number == number else f"not {truth}"
    return candidate if not score(candidate, truth) else candidate + " x"


def _noisy_answer(messages: Sequence[Message], correct: str, rng: random.Random) -> str:
    """A wrong final-answer sample (a digit changed, or a number appended); other replies stay right."""
    try:
        answer = json.loads(correct)["answer"]
    except (ValueError, KeyError, TypeError):
        return correct
    head, mark, value = answer.rpartition("FINAL ANSWER: ")
    if not mark:
        return correct
    wrong = perturb_digit(messages, value, rng) if any(c.isdigit() for c in value) else f"{value} {rng.randint(10, 99)}"
    return json.dumps({"answer": head + mark + wrong})


def _call(name: str, arguments: dict[str, str]) -> str:
    return json.dumps(
        {
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
            ]
        }
    )


def simulated_gaia_model(
    questions: Sequence[GaiaQuestion],
    *,
    known: Collection[str] | float = 1.0,
    error_rate: float = 0.0,
    latency_s: float = 0.0,
    seed: int = 0,
) -> tuple[SimulatedModel, frozenset[str]]:
    """The simulated model for ``questions`` and the task ids it knows.

    Args:
        questions: the questions it may be asked (it finds the question in each prompt by its text).
        known: the task ids it answers right, or the fraction of ``questions`` to know (see :func:`known_subset`).
        error_rate: per-sample probability of a wrong final-answer sample, which the answer vote has to correct.
        latency_s: seconds per request.
        seed: seeds the subset and the errors.

    Raises:
        ConfigError: ``known`` names ids that are not among ``questions``, or a rate is out of range.
    """
    if isinstance(known, float | int) and not isinstance(known, bool):
        ids = known_subset(questions, float(known), seed=seed)
    else:
        ids = frozenset(known)  # type: ignore[arg-type]
        unknown = sorted(ids - {q.task_id for q in questions})
        if unknown:
            raise ConfigError(f"known task ids not among the questions: {', '.join(unknown)}")
    by_length = sorted(questions, key=lambda q: len(q.question), reverse=True)

    def find(messages: Sequence[Message]) -> GaiaQuestion:
        text = "\n".join(m["content"] for m in messages if m["role"] == "user")
        for q in by_length:
            if q.question in text:
                return q
        raise ConfigError("the simulated GAIA model was asked about a question it was not given")

    def oracle(messages: Sequence[Message]) -> str:
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        q = find(messages)
        if system.startswith(_PLANNER_HEAD):
            step = {"id": "s1", "instruction": f"Find the facts needed for: {q.question}", "role": "solver"}
            return json.dumps({"subtasks": [step]})
        if system.startswith(ANSWERER_PROMPT[:40]):
            answer = q.final_answer if q.task_id in ids else wrong_answer(q.final_answer)
            return json.dumps({"answer": f"FINAL ANSWER: {answer}"})
        if system.startswith(SOLVER_PROMPT[:40]):
            last = messages[-1]["content"]
            found = "the answer is found" if q.task_id in ids else "nothing certain was found"
            if last.startswith(("Tool results:", "Output:")):
                return json.dumps({"answer": found})
            if "read_attachment" in system:  # acting with tools: read the file, or answer
                return _call("read_attachment", {}) if q.file_name else json.dumps({"answer": found})
            # acting in code: a program runs first (it reads the file, or prints what was found)
            if q.file_name:
                return f"```python\nprint(open({Path(q.file_name).name!r}, encoding='utf-8').read()[:300])\n```"
            return f"```python\nfound = {found!r}\nprint(found)\n```"
        raise ConfigError("the simulated GAIA model got a prompt of no GAIA role")

    model = SimulatedModel(oracle, error_rate=error_rate, wrong=_noisy_answer, latency_s=latency_s, seed=seed)
    return model, ids
