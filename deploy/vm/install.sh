#!/bin/bash
# Installs hybrid-router on an Ubuntu 24.04 GPU VM: NVIDIA driver, CUDA toolkit (to compile llama.cpp with CUDA),
# a venv with hybrid-router[local,gpu] (vLLM + CUDA llama.cpp), the systemd unit. Run as root; safe to re-run.
# cloud-init (deploy/vm/cloud-init.yaml) writes it to /usr/local/sbin/hybrid-router-install and runs it; on an
# existing VM copy it there with deploy/vm/hybrid-router.service and deploy/config/router.cuda.yaml and run it.
# Settings: /etc/hybrid-router/install.env (see the defaults below). Log: /var/log/hybrid-router-install.log.
set -euo pipefail

# --- settings (override in /etc/hybrid-router/install.env) ---------------------------------------------------
# What pip installs: a wheel you copied to the VM, a path to a checkout, or a git URL, with the extras.
HYBRID_ROUTER_SPEC="${HYBRID_ROUTER_SPEC:-}"
# NVIDIA driver branch (Ubuntu package nvidia-driver-<branch>); -open = open kernel modules (Hopper and newer
# need or prefer them). Skipped when nvidia-smi already works (most cloud GPU images ship a driver).
NVIDIA_DRIVER_BRANCH="${NVIDIA_DRIVER_BRANCH:-570-server-open}"
# CUDA toolkit from NVIDIA's apt repository: nvcc compiles llama.cpp's CUDA kernels. 12.8 needs driver >= 570.
CUDA_KEYRING_URL="${CUDA_KEYRING_URL:-https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/cuda-keyring_1.1-1_all.deb}"
CUDA_TOOLKIT_PACKAGE="${CUDA_TOOLKIT_PACKAGE:-cuda-toolkit-12-8}"
# GPU architectures compiled into llama.cpp: 80 A100, 86 A10/A40, 89 L4/L40S, 90 H100/H200.
CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES:-80;86;89;90}"
PREFIX=/opt/hybrid-router
# ---------------------------------------------------------------------------------------------------------------

if [ -r /etc/hybrid-router/install.env ]; then
  # shellcheck disable=SC1091
  . /etc/hybrid-router/install.env
fi
log() { echo "hybrid-router-install: $*"; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root"
case "$HYBRID_ROUTER_SPEC" in
  "" | *REPLACE-ME*) die "set HYBRID_ROUTER_SPEC in /etc/hybrid-router/install.env (a wheel, a path or a git URL, with [local,gpu])" ;;
esac
export DEBIAN_FRONTEND=noninteractive

log "packages"
apt-get update -q
apt-get install -y -q --no-install-recommends python3 python3-venv python3-dev build-essential cmake curl ca-certificates

log "service user"
id hybrid-router >/dev/null 2>&1 \
  || useradd --system --user-group --home-dir /var/lib/hybrid-router --no-create-home --shell /usr/sbin/nologin hybrid-router

if nvidia-smi >/dev/null 2>&1; then
  log "NVIDIA driver present: $(nvidia-smi --query-gpu=driver_version,name --format=csv,noheader | head -n 1)"
else
  log "installing NVIDIA driver ${NVIDIA_DRIVER_BRANCH} (a reboot follows)"
  apt-get install -y -q "nvidia-driver-${NVIDIA_DRIVER_BRANCH}"
  touch /run/hybrid-router-reboot-required
fi

if [ ! -x /usr/local/cuda/bin/nvcc ]; then
  log "installing ${CUDA_TOOLKIT_PACKAGE}"
  curl -fsSL -o /tmp/cuda-keyring.deb "$CUDA_KEYRING_URL"
  dpkg -i /tmp/cuda-keyring.deb
  apt-get update -q
  apt-get install -y -q --no-install-recommends "$CUDA_TOOLKIT_PACKAGE"
fi
export PATH="/usr/local/cuda/bin:$PATH"

log "venv ${PREFIX}/venv: ${HYBRID_ROUTER_SPEC} (compiles llama.cpp with CUDA: several minutes)"
install -d -m 0755 "$PREFIX"
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv "$PREFIX/venv"
# The driver may not be loaded yet (fresh install, no reboot): link libcuda against the toolkit's stub.
LIBRARY_PATH=/usr/local/cuda/lib64/stubs \
CMAKE_ARGS="-DGGML_CUDA=on -DGGML_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}" \
  "$PREFIX/venv/bin/pip" install --no-cache-dir "$HYBRID_ROUTER_SPEC"
find "$PREFIX/venv" -name 'libggml-cuda*.so*' | grep -q . || die "llama-cpp-python was built without its CUDA backend"
if nvidia-smi >/dev/null 2>&1; then
  "$PREFIX/venv/bin/python" -c "import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 'llama.cpp sees no GPU')"
fi
"$PREFIX/venv/bin/hybrid-router" --version

log "systemd unit"
chmod 0600 /etc/hybrid-router/env 2>/dev/null || true
systemctl daemon-reload
systemctl enable hybrid-router.service
if [ -e /run/hybrid-router-reboot-required ]; then
  log "the new NVIDIA driver loads at the reboot; hybrid-router starts after it"
else
  systemctl restart hybrid-router.service
  log "started: curl -s localhost:8080/readyz"
fi
