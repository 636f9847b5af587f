"""Training examples for LoRA adapters: the JSONL schema, answer-only encoding, and weighted batch drawing.

One example is the exact chat prompt a microagent saw and the answer it should give, in the strict output
format, with a weight (hard examples weigh more and are drawn more often). Only the answer's tokens carry the
loss: the prompt's labels are ``-100``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, Field, ValidationError

from mdap._outputs import write_atomic
from mdap.errors import ConfigError
from mdap.types import Message

__all__ = [
    "IGNORE",
    "TrainingExample",
    "draw_batch",
    "encode_example",
    "example_key",
    "read_examples",
    "write_examples",
]

IGNORE = -100
"""The label of a token that carries no loss (the prompt's tokens)."""


class TrainingExample(BaseModel):
    """One supervised example: ``messages`` (the prompt) -> ``completion`` (the answer text).

    Attributes:
        id: a stable identity (dedup key, held-out split key).
        messages: the chat prompt exactly as the model sees it (system, user, ...).
        completion: the answer in the strict output format, without the end-of-turn token.
        weight: how often the example is drawn relative to a weight of 1 (hard examples weigh more).
        group: examples of one group stay on one side of a held-out split (e.g. relabellings of one state).
        meta: anything else (task, disks, step, source, votes).
    """

    model_config = {"extra": "forbid"}

    id: str
    messages: list[dict[str, str]] = Field(min_length=1)
    completion: str
    weight: float = Field(1.0, gt=0.0)
    group: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_chat(cls, messages: Sequence[Message], completion: str, **fields: Any) -> TrainingExample:
        """An example from a rendered prompt (chat messages) and its answer text."""
        return cls(messages=[{"role": m["role"], "content": m["content"]} for m in messages], completion=completion,
                   **fields)  # fmt: skip

    @property
    def chat(self) -> list[Message]:
        """The prompt as chat messages (what a :class:`~mdap.models.ChatModel` takes)."""
        return [cast(Message, dict(m)) for m in self.messages]


def read_examples(path: Path) -> list[TrainingExample]:
    """Read a JSONL file of examples.

    Raises:
        ConfigError: the file is missing, empty, or a line is not a valid example (with its line number).
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise ConfigError(f"cannot read the training data {path}: {err}") from None
    out: list[TrainingExample] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(TrainingExample.model_validate_json(line))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(map(str, first["loc"])) or "line"
            raise ConfigError(
                f"{path}:{number} is not a training example ({where}: {first['msg']}); "
                "make it with `mdap adapters dataset`"
            ) from None
    if not out:
        raise ConfigError(f"{path} holds no training examples")
    return out


def write_examples(path: Path, examples: Sequence[TrainingExample]) -> None:
    """Write examples as JSONL (one per line), atomically.

    Raises:
        OutputError: the file could not be written (a full disk); the previous version stays.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(ex.model_dump_json() + "\n" for ex in examples), rerun="free space and run again")


def encode_example(tokenizer: Any, example: TrainingExample, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids of prompt + answer (+ end of turn) and labels that are ``IGNORE`` on every prompt token.

    The prompt is rendered by the tokenizer's chat template with the generation prompt, exactly as an
    OpenAI-compatible server renders it; the answer is the template's assistant turn after it.

    Raises:
        ConfigError: the template does not render the prompt as a prefix of the full conversation, or the
            example is longer than ``max_length`` tokens.
    """
    prompt = tokenizer.apply_chat_template(example.messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        [*example.messages, {"role": "assistant", "content": example.completion}], tokenize=False
    )
    if not full.startswith(prompt):
        raise ConfigError(f"example {example.id}: the chat template does not extend the prompt with the answer")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    ids = list(prompt_ids) + list(answer_ids)
    if len(ids) > max_length:
        raise ConfigError(f"example {example.id} has {len(ids)} tokens, above max_length={max_length}; raise it")
    return ids, [IGNORE] * len(prompt_ids) + list(answer_ids)


def draw_batch(weights: Sequence[float], size: int, seed: int, step: int) -> list[int]:
    """The example indices of batch ``step``: drawn with replacement in proportion to ``weights``.

    Depends only on ``(seed, step)``, so a resumed run draws exactly the batches a straight run would.
    """
    rng = random.Random(f"{seed}:{step}")
    return rng.choices(range(len(weights)), weights=weights, k=size)


def example_key(messages: Sequence[Mapping[str, object]]) -> str:
    """A canonical text of a prompt, for deduplication."""
    return json.dumps(list(messages), sort_keys=True, separators=(",", ":"))
