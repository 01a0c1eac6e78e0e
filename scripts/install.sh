#!/usr/bin/env bash
# Installs hybrid-router with a llama.cpp engine built by *our* flags, never the compiler's native ones.
#
#   bash scripts/install.sh ".[local]"        # serve
#   bash scripts/install.sh -e ".[test]"      # develop and test
#
# Why: llama-cpp-python's default build is `-march=native`. A wheel built that way on one machine (a CI runner, a
# Docker build host, pip's wheel cache) carries whatever that CPU had (AVX-512, AMX) to every machine it lands on,
# and ggml's AMX path has crashed on the first multi-token prompt on Sapphire Rapids. We build one portable
# variant (x86-64-v3: AVX2, FMA, F16C, BMI2; no AVX-512, no AMX), keep it in our own wheelhouse under a name that
# includes the flags, and install that file, so pip's cache can never hand back a native build.
# Everything after the script's own name is passed to `pip install` as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_VERSION=0.3.36  # keep equal to the pin in pyproject.toml
case "$(uname -m)" in
    x86_64 | amd64)
        FLAGS="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
        FLAGS="$FLAGS -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
        ;;
    aarch64 | arm64) FLAGS="-DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16" ;;
    *) FLAGS="-DGGML_NATIVE=OFF" ;;
esac
# GPU builds: HYBRID_ROUTER_LLAMA_CMAKE_ARGS="-DGGML_CUDA=ON" (added to the portable CPU flags).
FLAGS="$FLAGS -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF ${HYBRID_ROUTER_LLAMA_CMAKE_ARGS:-}"

python -m pip --version >/dev/null
tag="$(printf '%s' "$LLAMA_CPP_VERSION $FLAGS" | sha256sum | cut -c1-12)"
house="${HYBRID_ROUTER_WHEELHOUSE:-$HOME/.cache/hybrid-router/wheels}/llama-cpp-$tag"
wheel="$(ls "$house"/llama_cpp_python-*.whl 2>/dev/null | head -n1 || true)"
if [ -z "$wheel" ]; then
    echo "building llama-cpp-python $LLAMA_CPP_VERSION (portable: $FLAGS); a few minutes, once" >&2
    mkdir -p "$house.tmp"
    CMAKE_ARGS="$FLAGS" FORCE_CMAKE=1 python -m pip wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
        -w "$house.tmp" "llama-cpp-python==$LLAMA_CPP_VERSION"
    rm -rf "$house" && mv "$house.tmp" "$house"  # complete wheels only: a killed build leaves no half file behind
    wheel="$(ls "$house"/llama_cpp_python-*.whl | head -n1)"
fi
python -m pip install --quiet "$wheel" "$@"
