"""Price: what a model charges per million input and output tokens, and so what each Sample cost.

Give one to a model (``OpenAICompatible(url, price=Price(input_per_m=0.15, output_per_m=0.6))``,
``open_model(spec, price=...)``, a roles file's ``price:``, or ``--price-in``/``--price-out``) and every sample
carries its cost; without one, costs stay None and reports say "no price set" rather than 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .base import Sample

__all__ = ["Price"]


class Price(BaseModel):
    """A model's price per million tokens, in one currency unit (e.g. USD).

    Attributes:
        input_per_m: the price of a million prompt (input) tokens.
        output_per_m: the price of a million completion (output) tokens.

    Raises:
        pydantic.ValidationError: a negative, infinite or NaN price.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_m: float = Field(default=0.0, ge=0, description="price of a million prompt (input) tokens")
    output_per_m: float = Field(default=0.0, ge=0, description="price of a million completion (output) tokens")

    @field_validator("input_per_m", "output_per_m")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("a price must be a finite number")
        return value

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What ``prompt_tokens`` in and ``completion_tokens`` out cost."""
        return (prompt_tokens * self.input_per_m + completion_tokens * self.output_per_m) / 1e6

    def charge(self, samples: Sequence[Sample]) -> list[Sample]:
        """Set the cost of the samples of one request: each its completion tokens, the first also the prompt
        (a request's prompt is billed once, however many samples it returns). Returns the same samples."""
        for i, s in enumerate(samples):
            s.cost = self.cost(s.prompt_tokens if i == 0 else 0, s.completion_tokens)
        return list(samples)
