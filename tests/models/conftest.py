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


def make_lora(base: Path, out: Path, seed: int, rank: int = 8) -> Path:
    """Save a PEFT LoRA for ``base`` with random A *and* B (so it changes the outputs) to ``out``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def local_base() -> Path:
    """The converted SmolLM2-135M-Instruct folder (converted on first use, then cached)."""
    return local_model_dir()


@pytest.fixture(scope="session")
def loras(local_base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two random-init rank-8 LoRA adapters for SmolLM2, ``a`` and ``b``."""
    root = tmp_path_factory.mktemp("loras")
    return {name: make_lora(local_base, root / name, seed) for name, seed in (("a", 1), ("b", 2))}


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
