"""Fixtures for the real local model: tiny random LoRA adapters and one CPU vLLM server per test session.

The server takes about a minute to start and 3.5 GiB of memory, so it starts once, on first use, and serves
every test that asks for it. A test that kills it (the crash test) leaves it dead; the next user restarts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from mdap.models import LocalModel
from mdap.models.local import local_model_dir


def make_loras(base: Path, outs: dict[Path, int], rank: int = 8) -> None:
    """Save a PEFT LoRA for ``base`` to each folder of ``outs``, seeded by its value, with random A *and* B (so it
    changes the outputs; PEFT's default B = 0 would not)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    for out, seed in outs.items():
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, config)
        peft_model.save_pretrained(out)
        model = peft_model.unload()  # the base model again, for the next adapter


@pytest.fixture(scope="session")
def local_base() -> Path:
    """The converted SmolLM2-135M-Instruct folder (converted on first use, then cached)."""
    return local_model_dir()


@pytest.fixture(scope="session")
def loras(local_base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two random-init rank-8 LoRA adapters for SmolLM2, ``a`` and ``b``."""
    root = tmp_path_factory.mktemp("loras")
    make_loras(local_base, {root / "a": 1, root / "b": 2})
    return {"a": root / "a", "b": root / "b"}


@pytest.fixture(scope="session")
def _local_session(loras: dict[str, Path]) -> Iterator[LocalModel]:
    model = LocalModel(
        adapters={"a": loras["a"]},
        runtime_lora=True,
        client_options={"timeout": 60.0, "max_retries": 1, "backoff_s": 0.2},
    )
    asyncio.run(model.start())
    yield model
    asyncio.run(model.stop())


@pytest.fixture
def local_model(_local_session: LocalModel) -> LocalModel:
    """The session's LocalModel, serving base ``SmolLM2-135M-Instruct`` and adapter ``a``, runtime LoRA on."""
    if not _local_session.server.running:
        asyncio.run(_local_session.start())
    return _local_session
