"""Red flags: signs that a sample comes from a confused model and must be discarded, not voted.

MAKER's finding: over-long answers and answers that break the output format are far more often wrong, and
discarding them (and drawing again) lowers both the error rate and the correlation of errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from mdap.errors import ConfigError
from mdap.models import Sample

__all__ = ["NO_RED_FLAGS", "PARSE", "TOO_LONG", "TRUNCATED", "RedFlagPolicy"]

TOO_LONG = "too_long"
"""The sample used more completion tokens than the policy allows."""
TRUNCATED = "truncated"
"""The model stopped for length (``finish_reason == "length"``)."""
PARSE = "parse"
"""The strict parser rejected the sample (raised :class:`~mdap.errors.RedFlag` with this or its own kind)."""


@dataclass(frozen=True, slots=True)
class RedFlagPolicy:
    """Which samples to discard before parsing.

    Args:
        max_completion_tokens: a sample with more completion tokens is flagged ``too_long``; None = no limit.
        flag_truncated: flag samples the model cut off for length (``truncated``).
    """

    max_completion_tokens: int | None = 750
    flag_truncated: bool = True

    def __post_init__(self) -> None:
        if self.max_completion_tokens is not None and self.max_completion_tokens < 1:
            raise ConfigError(f"max_completion_tokens must be >= 1 or None, got {self.max_completion_tokens}")

    def check(self, sample: Sample) -> str | None:
        """Return the name of the flag this sample raises, or None if it may be parsed."""
        if self.flag_truncated and sample.finish_reason == "length":
            return TRUNCATED
        limit = self.max_completion_tokens
        if limit is not None and sample.completion_tokens > limit:
            return TOO_LONG
        return None


NO_RED_FLAGS = RedFlagPolicy(max_completion_tokens=None, flag_truncated=False)
"""A policy that flags nothing before parsing (parse failures still can't be voted)."""
