"""A voter as data: one schema for roles files, the pool's wire format and benchmark configs.

    {"kind": "first_to_ahead_by_k", "k": 2}        {"kind": "majority", "n": 3}

:meth:`VoterSpec.build` makes the voter; :meth:`VoterSpec.of` describes one, so a voter travels to a pool worker
and votes there the same way. Old spellings are refused with the new name (``kind: "ahead_by_k"`` is now
``"first_to_ahead_by_k"``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mdap.errors import ConfigError

from .ahead_by_k import FirstToAheadByK
from .base import Voter
from .majority import Majority
from .redflags import RedFlagPolicy
from .transforms import Spread

__all__ = ["VoterKind", "VoterSpec"]

VoterKind = Literal["first_to_ahead_by_k", "majority"]
"""The voters a spec can name: :class:`~mdap.voters.FirstToAheadByK` and :class:`~mdap.voters.Majority`."""

_RENAMED = {"ahead_by_k": "first_to_ahead_by_k"}
"""Old kind names -> the name that replaced them."""


class VoterSpec(BaseModel):
    """A voter's settings. The defaults are those of a roles file's role; unset fields of the other kind are unused.

    Raises (on validation): a ``pydantic.ValidationError`` naming the bad field, or an old name with its new one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: VoterKind = Field(
        default="first_to_ahead_by_k", description="first_to_ahead_by_k (margin k) or majority (n votes)"
    )
    k: int | Literal["auto"] = Field(default=2, description="first_to_ahead_by_k: the winning margin (>= 1), or 'auto'")
    n: int = Field(default=3, ge=1, description="majority: valid votes to collect")
    temperature: float = Field(default=0.3, ge=0, description="sampling temperature")
    first_temperature: float | None = Field(
        default=None, ge=0, description="first_to_ahead_by_k: temperature of each step's first sample (None: the same)"
    )
    max_samples: int = Field(default=20, ge=1, description="sample cap per step before VoteFailed")
    max_tokens: int | None = Field(default=None, ge=1, description="completion token limit per sample")
    red_flags: RedFlagPolicy = Field(default_factory=RedFlagPolicy, description="which samples to discard")
    adapter: str | None = Field(default=None, description="the LoRA adapter to sample from (None: the role's)")
    target: float = Field(
        default=0.95, gt=0, lt=1, description="first_to_ahead_by_k with k='auto': the whole-task success to reach"
    )

    @field_validator("k", mode="before")
    @classmethod
    def _margin(cls, k: Any) -> Any:
        if k == "auto" or (isinstance(k, int) and not isinstance(k, bool) and k >= 1):
            return k
        raise ValueError(f"k must be an integer >= 1 or 'auto', got {k!r}")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            kind = data.get("kind")
            if isinstance(kind, str) and kind in _RENAMED:
                raise ValueError(f"kind {kind!r} was renamed to {_RENAMED[kind]!r}")
            if "type" in data and "kind" not in data:
                raise ValueError(
                    "'type' was renamed to 'kind' and 'config' spread into the spec's own fields "
                    "(a pool worker of an older mdap? run one version on both sides)"
                )
        return data

    @classmethod
    def parse(cls, data: Any, what: str = "voter") -> VoterSpec:
        """Validate ``data`` (a dict from a file or the wire).

        Raises:
            ConfigError: naming ``what`` and each bad field.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or what}: {e['msg']}" for e in err.errors())
            raise ConfigError(f"bad {what}: {problems}") from None

    def build(self, *, adapter: str | None = None, spread: Spread | None = None) -> Voter:
        """The voter.

        Args:
            adapter: the adapter to use when the spec names none (e.g. its role's).
            spread: decorrelated sampling for a first_to_ahead_by_k voter (not data: views are code).

        Raises:
            ConfigError: settings the voter refuses (e.g. max_samples below k), or a spread for a majority vote.
        """
        chosen = self.adapter if self.adapter is not None else adapter
        if self.kind == "majority":
            if spread is not None:
                raise ConfigError("decorrelated sampling (spread) works with first_to_ahead_by_k, not majority")
            return Majority(
                n=self.n,
                temperature=self.temperature,
                max_samples=self.max_samples,
                max_tokens=self.max_tokens,
                red_flags=self.red_flags,
                adapter=chosen,
            )
        return FirstToAheadByK(
            k=self.k,
            temperature=self.temperature,
            first_temperature=self.first_temperature,
            max_samples=self.max_samples,
            max_tokens=self.max_tokens,
            red_flags=self.red_flags,
            adapter=chosen,
            target=self.target,
            spread=spread,
        )

    @classmethod
    def of(cls, voter: Voter) -> VoterSpec:
        """Describe ``voter``, so :meth:`build` makes an equal one (e.g. on a pool worker).

        Raises:
            ConfigError: a voter of another type, ``k="auto"`` not yet resolved, or a spread (views are code).
        """
        if isinstance(voter, FirstToAheadByK):
            if voter.k == "auto":
                raise ConfigError("k='auto' must be resolved before steps go to a pool (calibrate first)")
            if voter.spread is not None:
                raise ConfigError("a voter with decorrelated sampling (spread) cannot travel; use the local pool")
            return cls(
                kind="first_to_ahead_by_k",
                k=voter.k,
                temperature=voter.temperature,
                first_temperature=voter.first_temperature,
                max_samples=voter.max_samples,
                max_tokens=voter.max_tokens,
                red_flags=voter.red_flags,
                adapter=voter.adapter,
                target=voter.target,
            )
        if isinstance(voter, Majority):
            return cls(
                kind="majority",
                n=voter.n,
                temperature=voter.temperature,
                max_samples=voter.max_samples,
                max_tokens=voter.max_tokens,
                red_flags=voter.red_flags,
                adapter=voter.adapter,
            )
        raise ConfigError(
            f"a voter spec describes FirstToAheadByK or Majority voters, not {type(voter).__name__}; use the local pool"
        )
