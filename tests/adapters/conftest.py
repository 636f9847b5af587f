"""Fixtures for adapter training: a tiny random Llama with SmolLM2's real tokenizer and chat template.

Training the real 135M model takes minutes per step on a CPU; the tiny model has the same architecture and
tokenizer, so the same code path runs (encode, mask, LoRA, checkpoints, save) in seconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mdap.models.local import local_model_dir

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


@pytest.fixture(scope="session")
def smol_dir() -> Path:
    """The converted SmolLM2-135M-Instruct folder (for its tokenizer)."""
    return local_model_dir()


@pytest.fixture(scope="session")
def tiny_base(smol_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 64-wide Llama with SmolLM2's tokenizer, saved as an HF folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out = tmp_path_factory.mktemp("tiny-base")
    config = AutoConfig.from_pretrained(smol_dir)
    config.update(
        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 16}
    )  # fmt: skip
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    for name in _TOKENIZER_FILES:
        if (smol_dir / name).exists():
            shutil.copy(smol_dir / name, out / name)
    return out
