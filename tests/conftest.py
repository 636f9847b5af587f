"""Fixtures shared by every test folder."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mdap.models import LocalModel
from mdap.models.local import LOCAL_URL_ENV, local_model_dir

# ---- The embedded model (issue 3): one real CPU vLLM server per test session ---------------------------------
# It takes about a minute to start (more on a busy machine) and 3.5 GiB, so it starts once, on first use, and
# serves every test that asks for `local_model` (or `local_model_url`). While it runs, $MDAP_LOCAL_URL names it,
# so any LocalModel() a test builds afterwards (also `--model local` in an in-process CLI run) uses it instead of
# starting its own. A test that kills it (tests/models, the crash test) leaves it dead; the next user restarts it.


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
    outer = os.environ.pop(LOCAL_URL_ENV, None)  # this session owns its server
    model = LocalModel(
        adapters={"a": loras["a"]},
        runtime_lora=True,
        client_options={"timeout": 60.0, "max_retries": 1, "backoff_s": 0.2},
    )
    try:
        asyncio.run(model.start())
        os.environ[LOCAL_URL_ENV] = model.server.base_url
        yield model
    finally:
        asyncio.run(model.stop())
        os.environ.pop(LOCAL_URL_ENV, None)
        if outer is not None:
            os.environ[LOCAL_URL_ENV] = outer


@pytest.fixture
def local_model(_local_session: LocalModel) -> LocalModel:
    """The session's LocalModel: base ``SmolLM2-135M-Instruct`` and adapter ``a`` served, runtime LoRA on."""
    if not _local_session.server.running:
        asyncio.run(_local_session.start())
        os.environ[LOCAL_URL_ENV] = _local_session.server.base_url
    return _local_session


@pytest.fixture
def local_model_url(local_model: LocalModel) -> str:
    """The ``/v1`` URL of the session's local model server (also in ``$MDAP_LOCAL_URL`` while it runs)."""
    return local_model.server.base_url
