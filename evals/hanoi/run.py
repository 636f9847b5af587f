"""Run Towers of Hanoi end to end: the MAKER replication at any number of disks."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from mdap.checkpoint import RunLock, lock_path
from mdap.errors import ConfigError, invalid_settings
from mdap.executor import Executor
from mdap.microstep import Chain
from mdap.models import SIMULATED, ChatModel, Price, open_model
from mdap.pool import LocalPool, Pool, RedisPool
from mdap.report import RunReport
from mdap.voters import NO_RED_FLAGS, RedFlagPolicy, Spread, VoterSpec, expected_samples

from .pool_kind import HANOI_KIND
from .solver import simulated_hanoi_model
from .task import HanoiStep
from .verify import verify_step

__all__ = ["HanoiConfig", "hanoi_chain", "run_hanoi"]


class HanoiConfig(BaseModel):
    """Everything a Hanoi run takes; the CLI flags map one to one onto these fields."""

    model_config = {"extra": "forbid"}

    disks: int = Field(20, ge=1, le=40, description="number of disks; the run has 2^disks - 1 steps")
    model: str = Field("simulated", description="'simulated', 'local', or an OpenAI-compatible server URL")
    adapter: str | None = Field(None, description="LoRA adapter (served model name) the worker samples from")
    price: Price | None = Field(None, description="the model's price per million tokens (None: no price set)")
    error_rate: float = Field(0.002, ge=0.0, le=1.0, description="simulated model: per-sample error rate")
    red_flag_rate: float = Field(0.0, ge=0.0, le=1.0, description="simulated model: malformed/over-long rate")
    correlation: float = Field(0.0, ge=0.0, le=1.0, description="simulated model: how often wrong samples agree")
    latency: float = Field(0.0, ge=0.0, description="simulated model: seconds per request")
    seed: int = Field(0, description="seed of the simulated model")
    k: int | Literal["auto"] = Field(3, description="vote margin, or 'auto' to calibrate it")
    target: float = Field(0.95, gt=0.0, lt=1.0, description="whole-run success probability k='auto' aims for")
    temperature: float = Field(0.1, ge=0.0, description="sampling temperature")
    first_temperature: float | None = Field(None, ge=0.0, description="temperature of each step's first sample")
    max_samples: int = Field(100, ge=1, description="sample cap per step before VoteFailed")
    max_tokens: int = Field(750, ge=1, description="completion token limit (longer samples are red-flagged)")
    red_flags: bool = Field(True, description="discard over-long/truncated samples before voting (False: none)")
    run_dir: Path | None = Field(None, description="where the checkpoint lives (default .mdap/hanoi-<disks>)")
    trace: Path | None = Field(None, description="JSONL trace file, one line per decided step")
    resume: bool = Field(False, description="continue the run checkpointed in run_dir")
    checkpoint_every: int = Field(10_000, ge=1, description="steps between checkpoints")
    calibration_steps: int = Field(100, ge=1, description="k='auto': steps sampled to estimate p")
    calibration_samples: int = Field(10, ge=2, description="k='auto': samples per calibration step")
    progress: bool = Field(False, description="show a progress bar")
    pool: str | None = Field(None, description="redis:// URL of a worker pool (role 'hanoi'); None = in-process")
    decorrelate: bool = Field(False, description="spread each step's samples over peg rotations (decorrelated)")
    runs: int = Field(1, ge=1, description="independent runs at once through one model client (one report)")
    preset: Literal["maker"] | None = Field(
        None, description="'maker': MAKER's voter (first sample greedy, the rest at 0.1); fields set here win"
    )

    @field_validator("k")
    @classmethod
    def _k_positive(cls, k: int | str) -> int | str:
        if isinstance(k, int) and k < 1:
            raise ValueError("k must be >= 1 or 'auto'")
        return k

    @classmethod
    def build(cls, **values: object) -> HanoiConfig:
        """Validate ``values``, turning pydantic's errors into a ConfigError that names each bad field."""
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            raise invalid_settings("Hanoi settings", err) from None

    @property
    def voter(self) -> VoterSpec:
        """The run's voter, in the one voter schema (first-to-ahead-by-k over these fields)."""
        first_temperature = self.first_temperature
        if first_temperature is None and self.preset == "maker":
            first_temperature = 0.0  # FirstToAheadByK.maker(); its 0.1 and 750 tokens are this config's defaults
        return VoterSpec(
            kind="first_to_ahead_by_k",
            k=self.k,
            temperature=self.temperature,
            first_temperature=first_temperature,
            max_samples=self.max_samples,
            max_tokens=self.max_tokens,
            red_flags=RedFlagPolicy(max_completion_tokens=self.max_tokens) if self.red_flags else NO_RED_FLAGS,
            adapter=self.adapter,
            target=self.target,
        )

    @property
    def checkpoint_path(self) -> Path:
        """The checkpoint file inside the run directory."""
        return (self.run_dir or Path(".mdap") / f"hanoi-{self.disks}") / "checkpoint.json"


def hanoi_chain(disks: int) -> Chain:  # type: ignore[type-arg]
    """The chain of all 2^disks - 1 moves, with the independent verifier."""
    ms = HanoiStep(disks)
    return Chain(ms, ms.initial(), ms.steps, verify_step, kind=(HANOI_KIND, {"disks": disks}))


def _simulated(cfg: HanoiConfig) -> ChatModel:
    return simulated_hanoi_model(
        error_rate=cfg.error_rate,
        red_flag_rate=cfg.red_flag_rate,
        correlation=cfg.correlation,
        latency_s=cfg.latency,
        seed=cfg.seed,
    )


async def run_hanoi(cfg: HanoiConfig, model: ChatModel | None = None, pool: Pool | None = None) -> RunReport:
    """Solve ``cfg.disks``-disk Hanoi by voting, verifying every move; resumable from its checkpoint.

    With a pool URL (``cfg.pool``) or a ``pool``, steps are decided by the pool's workers (their own
    ``--model`` flags choose the model; this process builds none). With ``cfg.runs`` > 1, that many independent
    runs go at once through the one model (:meth:`~mdap.executor.Executor.run_many`: one summed report, a
    checkpoint and trace per run).

    Args:
        cfg: the run's settings.
        model: use this model instead of the one ``cfg.model`` names.
        pool: decide the steps on this pool instead of ``cfg.pool``.

    Raises:
        ConfigError: bad settings or an unknown model; CheckpointError: a resume that cannot be done.
        RunInUse: another coordinator runs in the same run directory (its lock is taken before any model
            or pool is started, and held until the run ends).
    """
    if cfg.error_rate + cfg.red_flag_rate > 1.0:
        raise ConfigError("error_rate + red_flag_rate must be at most 1")
    voter = cfg.voter.build(spread=Spread(HanoiStep(cfg.disks).transforms) if cfg.decorrelate else None)
    if pool is None and cfg.pool is not None:
        pool = RedisPool(cfg.pool, role=HANOI_KIND)
    remote = pool is not None and not isinstance(pool, LocalPool)
    if remote and cfg.k == "auto":
        raise ConfigError("k='auto' calibrates on this process's model; with a pool give a fixed --k")
    ckpt = cfg.checkpoint_path
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        stack.enter_context(
            RunLock(lock_path(ckpt), what=f"run directory {ckpt.parent}", way_out="use another --run-dir")
        )
        chat = None
        if model is not None or not remote:
            spec = model if model is not None else cfg.model
            chat = await stack.enter_async_context(
                open_model(spec, adapter=cfg.adapter, price=cfg.price, simulated=lambda: _simulated(cfg))
            )
        executor: Executor = Executor(  # type: ignore[type-arg]
            chat,
            voter,
            checkpoint=ckpt,
            checkpoint_every=cfg.checkpoint_every,
            trace=cfg.trace,
            progress=cfg.progress,
            calibration_steps=cfg.calibration_steps,
            calibration_samples=cfg.calibration_samples,
            pool=pool,
            lock=False,  # held above
        )
        chains = [hanoi_chain(cfg.disks) for _ in range(cfg.runs)]
        report = await executor.run_many(chains, resume=cfg.resume)
    if report.expected_samples_per_step is None and cfg.model == SIMULATED and report.k and not remote:
        valid = 1.0 - cfg.red_flag_rate
        p = (1.0 - cfg.error_rate - cfg.red_flag_rate) / valid if valid > 0 else 0.0
        if p > 0.5:
            report.expected_samples_per_step = expected_samples(p, report.k, cfg.red_flag_rate)
    return report
