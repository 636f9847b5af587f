"""Turn a GGUF model file into a safetensors Hugging Face folder that ``vllm serve`` loads.

transformers (with the ``gguf`` package) reads the GGUF file and dequantizes it; ``save_pretrained`` refuses a
GGUF-loaded model, so its weights are copied into a fresh model built from the same config and saved from there.
Run as ``python -m mdap.models._gguf GGUF_FILE OUT_DIR`` so torch and transformers load in a process of their own.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["convert"]


def convert(gguf: Path, out: Path, dtype: str = "bfloat16") -> None:
    """Write the model in ``gguf`` to ``out`` as config, tokenizer (with chat template) and safetensors weights.

    Raises:
        ImportError: torch, transformers or gguf is missing.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch_dtype)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the weights are dequantized now: serve them as plain tensors
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m mdap.models._gguf GGUF_FILE OUT_DIR")
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
