"""LoRA fine-tuning of a worker role's adapter on voted decisions (``mdap adapters train``).

The loss is on the answer tokens only (the prompt is given, not learned). Batches are drawn with replacement in
proportion to each example's weight, from a generator seeded by ``(seed, step)``, so a run is deterministic
and a resumed run draws exactly the batches an uninterrupted one would. Checkpoints (adapter, optimizer,
schedule, loss history) are written every ``checkpoint_every`` steps under ``OUT/checkpoints``.

The output folder is a plain PEFT adapter (``adapter_config.json`` + ``adapter_model.safetensors``) that
``vllm serve --lora-modules NAME=OUT`` and :meth:`VLLMServer.load_adapter` accept, plus ``mdap-card.json``.

torch, transformers and peft are imported inside the functions (``pip install 'mdap[train]'``).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from mdap.errors import ConfigError
from mdap.jsontext import loads_json

from ._lora_step import answer_logprobs, batch_loss
from .lora_data import TrainingExample, draw_batch, encode_example, read_examples

__all__ = [
    "CARD_FILE",
    "DEFAULT_TARGETS",
    "TrainConfig",
    "TrainResult",
    "answer_probabilities",
    "read_card",
    "train_adapter",
    "write_card",
]

CARD_FILE = "mdap-card.json"
"""The model card next to the adapter weights."""
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Every linear projection of a Llama-style block (what vLLM's LoRA layers serve)."""
INSTALL_HINT = "pip install 'mdap[train]'"
_STATE = "trainer_state.pt"


class TrainConfig(BaseModel):
    """Everything a training run takes; ``mdap adapters train`` flags map one to one onto these fields."""

    model_config = {"extra": "forbid"}

    base: Path = Field(description="the base model's HF folder (e.g. the converted SmolLM2 folder)")
    data: Path = Field(description="training examples, JSONL (see `mdap adapters dataset`)")
    out: Path = Field(description="the adapter folder to write")
    role: str = Field("worker", description="the pipeline role this adapter serves (recorded in the card)")
    rank: int = Field(16, ge=1, le=256, description="LoRA rank r")
    alpha: float = Field(32.0, gt=0.0, description="LoRA alpha (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="LoRA dropout")
    targets: tuple[str, ...] = Field(DEFAULT_TARGETS, min_length=1, description="module names LoRA wraps")
    steps: int = Field(250, ge=1, description="optimizer steps (of this round)")
    batch_size: int = Field(8, ge=1, description="examples per step")
    lr: float = Field(5e-4, gt=0.0, description="peak learning rate (linear warm-up, then linear decay)")
    warmup: int = Field(10, ge=0, description="warm-up steps")
    seed: int = Field(0, description="seed of the LoRA init and of the batch draws")
    checkpoint_every: int = Field(50, ge=1, description="steps between checkpoints")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept (older ones are deleted)")
    resume: bool = Field(False, description="continue from the newest checkpoint in OUT/checkpoints")
    init_adapter: Path | None = Field(None, description="start from this adapter's weights (a later round)")
    max_length: int = Field(1024, ge=8, description="longest example in tokens (longer ones are an error)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")
    progress: bool = Field(True, description="show a progress bar with loss and examples/s")

    @classmethod
    def build(cls, **values: object) -> TrainConfig:
        """Validate ``values``, turning pydantic's errors into one ConfigError naming each bad field."""
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']} (got {e.get('input')!r})" for e in err.errors()
            )
            raise ConfigError(f"invalid training settings: {problems}") from None


class TrainResult(BaseModel):
    """What a training run did (also the ``training`` part of the model card)."""

    steps: int
    resumed_from: int | None
    examples_seen: int
    final_loss: float
    losses: list[tuple[int, float]]
    seconds: float
    examples_per_second: float


def _require() -> tuple[Any, Any, Any]:
    try:
        import peft
        import torch
        import transformers
    except ImportError as err:
        raise ConfigError(f"training adapters needs torch, transformers and peft ({err.name} is missing): "
                          f"{INSTALL_HINT}") from None  # fmt: skip
    return torch, transformers, peft


def _open_base(base: Path, threads: int | None) -> tuple[Any, Any, Any]:
    """torch, transformers and peft, once the base folder is known to be an HF model folder; sets torch's
    CPU threads when given."""
    torch, transformers, peft = _require()
    if not (base / "config.json").is_file():
        raise ConfigError(f"base model folder {base} has no config.json: give the HF folder of the base model")
    if threads:
        torch.set_num_threads(threads)
    return torch, transformers, peft


def _pad_id(tokenizer: Any) -> int:
    """The padding token (the end-of-sequence token when the tokenizer has none)."""
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)


def _checkpoints(out: Path) -> list[Path]:
    root = out / "checkpoints"
    return sorted(root.glob("step-*")) if root.is_dir() else []


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def scale(step: int) -> float:
        if cfg.warmup and step < cfg.warmup:
            return (step + 1) / cfg.warmup
        span = max(1, cfg.steps - cfg.warmup)
        return max(0.0, 1.0 - (step - cfg.warmup) / span)

    return scale


def train_adapter(cfg: TrainConfig, *, stop_after: int | None = None) -> TrainResult:
    """Train (or continue training) a LoRA adapter and write it to ``cfg.out`` with its model card.

    Args:
        cfg: the run's settings.
        stop_after: stop after this many steps of this call, leaving only checkpoints (to test resuming).

    Raises:
        ConfigError: missing packages, a bad base folder or data file, or ``resume`` with no checkpoint.
    """
    torch, transformers, peft = _open_base(cfg.base, cfg.threads)
    examples = read_examples(cfg.data)
    torch.manual_seed(cfg.seed)
    tokenizer = transformers.AutoTokenizer.from_pretrained(cfg.base)
    encoded = [encode_example(tokenizer, ex, cfg.max_length) for ex in examples]
    weights = [ex.weight for ex in examples]
    pad = _pad_id(tokenizer)

    model = transformers.AutoModelForCausalLM.from_pretrained(cfg.base, dtype=torch.float32)
    if cfg.init_adapter is not None:
        model = peft.PeftModel.from_pretrained(model, cfg.init_adapter, is_trainable=True)
    else:
        lora = peft.LoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=list(cfg.targets),
            task_type="CAUSAL_LM",
        )
        try:
            model = peft.get_peft_model(model, lora)
        except ValueError as err:
            raise ConfigError(f"LoRA targets {list(cfg.targets)} do not fit {cfg.base}: {err}") from None
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))

    start, prior_seconds = 0, 0.0
    losses: list[tuple[int, float]] = []
    if cfg.resume:
        found = _checkpoints(cfg.out)
        if not found:
            raise ConfigError(f"nothing to resume: {cfg.out}/checkpoints holds no checkpoint; train without resume")
        start, losses, prior_seconds = _load_checkpoint(found[-1], model, optimizer, scheduler, torch, peft)
    elif cfg.out.exists() and any(cfg.out.iterdir()):
        shutil.rmtree(cfg.out / "checkpoints", ignore_errors=True)  # a fresh run: old checkpoints would mislead

    model.train()
    bar = _bar(cfg, start)
    t0 = time.perf_counter()
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    loss_value = math.nan
    for step in range(start, end):
        batch = [encoded[i] for i in draw_batch(weights, cfg.batch_size, cfg.seed, step)]
        loss = batch_loss(model, batch, pad, torch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())
        losses.append((step + 1, round(loss_value, 5)))
        done = step + 1
        if bar is not None:
            rate = (done - start) * cfg.batch_size / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix_str(f"loss {loss_value:.4f}, {rate:.1f} ex/s", refresh=False)
            bar.update(1)
        if done % cfg.checkpoint_every == 0 or done == end:
            seconds = prior_seconds + time.perf_counter() - t0
            _save_checkpoint(cfg, done, model, optimizer, scheduler, losses, seconds, torch)
    if bar is not None:
        bar.close()
    seconds = prior_seconds + time.perf_counter() - t0
    result = TrainResult(
        steps=end,
        resumed_from=start if cfg.resume else None,
        examples_seen=end * cfg.batch_size,
        final_loss=losses[-1][1] if losses else math.nan,
        losses=losses,
        seconds=round(seconds, 2),
        examples_per_second=round(end * cfg.batch_size / seconds, 3) if seconds > 0 else 0.0,
    )
    if end == cfg.steps:
        model.save_pretrained(cfg.out)
        _fix_base(cfg.out, cfg.base)
        write_card(cfg, result, len(examples))
    return result


def answer_probabilities(
    base: Path,
    examples: Sequence[TrainingExample],
    *,
    adapter: Path | None = None,
    temperature: float = 0.7,
    batch_size: int = 8,
    max_length: int = 1024,
    threads: int | None = None,
    progress: bool = False,
) -> list[float]:
    """Per example, the exact probability that one sample at ``temperature`` is its answer, token for token.

    One teacher-forced forward pass per batch replaces many sampled generations: what hard-example mining needs
    (which states the model still gets wrong) at a fraction of the cost. Answers that parse the same but are
    written differently are not counted, so this is a lower bound of the sampled p.

    Raises:
        ConfigError: missing packages, a bad base folder, or a temperature <= 0.
    """
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0 for answer probabilities, got {temperature}")
    torch, transformers, peft = _open_base(base, threads)
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    pad = _pad_id(tokenizer)
    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        model = peft.PeftModel.from_pretrained(model, adapter)
    model.eval()
    encoded = [encode_example(tokenizer, ex, max_length) for ex in examples]
    out: list[float] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(encoded), desc="answer p", unit="example", file=sys.stderr)
    for i in range(0, len(encoded), batch_size):
        chunk = encoded[i : i + batch_size]
        out += [math.exp(lp) for lp in answer_logprobs(model, chunk, pad, torch, temperature)]
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return out


def _bar(cfg: TrainConfig, start: int) -> Any:
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.steps, initial=start, desc=f"train {cfg.role}", unit="step", file=sys.stderr)


def _fix_base(out: Path, base: Path) -> None:
    """Record the base as an absolute folder (what vLLM and :meth:`Adapter.from_peft` read)."""
    file = out / "adapter_config.json"
    config = json.loads(file.read_text())
    config["base_model_name_or_path"] = str(base.resolve())
    file.write_text(json.dumps(config, indent=2, sort_keys=True))


def _save_checkpoint(
    cfg: TrainConfig,
    step: int,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    losses: list[Any],
    seconds: float,
    torch: Any,
) -> None:
    folder = cfg.out / "checkpoints" / f"step-{step:07d}"
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "losses": losses, "seconds": seconds, "config": cfg.model_dump(mode="json")}  # fmt: skip
    torch.save(state, tmp / _STATE)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    for old in _checkpoints(cfg.out)[: -cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(
    folder: Path, model: Any, optimizer: Any, scheduler: Any, torch: Any, peft: Any
) -> tuple[int, list[Any], float]:
    from safetensors.torch import load_file

    try:
        state = torch.load(folder / _STATE, weights_only=False)
        weights = load_file(str(folder / "adapter_model.safetensors"))
    except (OSError, RuntimeError) as err:
        raise ConfigError(f"cannot resume from {folder}: {err}; delete it to resume from an older checkpoint") from None
    peft.set_peft_model_state_dict(model, weights)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"]), [tuple(x) for x in state["losses"]], float(state["seconds"])


def write_card(cfg: TrainConfig, result: TrainResult, examples: int, extra: dict[str, Any] | None = None) -> Path:
    """Write ``mdap-card.json``: base, role, data (path, hash, size), LoRA settings, training figures."""
    card = {
        "role": cfg.role,
        "base": str(cfg.base.resolve()),
        "data": {"path": str(cfg.data), "sha256": _file_sha(cfg.data), "examples": examples},
        "lora": {"rank": cfg.rank, "alpha": cfg.alpha, "dropout": cfg.dropout, "targets": list(cfg.targets)},
        "settings": {k: v for k, v in cfg.model_dump(mode="json").items() if k not in {"progress", "resume"}},
        "training": result.model_dump(exclude={"losses"}),
        "loss_curve": result.losses[:: max(1, len(result.losses) // 50)],
        **(extra or {}),
    }
    path = cfg.out / CARD_FILE
    path.write_text(json.dumps(card, indent=2))
    return path


def read_card(folder: Path) -> dict[str, Any]:
    """The model card of an adapter folder ({} when it has none)."""
    try:
        data = loads_json((Path(folder) / CARD_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
