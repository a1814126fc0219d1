#!/usr/bin/env bash
# Install ctsam3d and everything it needs on a fresh machine:
#   - a virtual environment in .venv (unless one is already active),
#   - PyTorch: kept if already importable (GPU users keep their build); otherwise the CUDA
#     build where an NVIDIA driver is present, else the CPU build torch==2.13.0
#     (set TORCH_INDEX_URL to a CPU wheel index to avoid pulling a CUDA build on Linux),
#   - the ctsam3d package (editable) with its test extras,
#   - the web viewer's npm package (@niivue/niivue, pinned in package-lock.json).
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
elif [ ! -e .venv ]; then
  # Install into the environment the user activated (keeping its torch); .venv points to it so
  # the README's `.venv/bin/...` commands work either way.
  ln -s "$VIRTUAL_ENV" .venv
  echo "install.sh: using the active environment $VIRTUAL_ENV (linked as .venv)"
fi
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true

if python -c "import torch" >/dev/null 2>&1; then
  echo "install.sh: keeping installed torch $(python -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  echo "install.sh: NVIDIA GPU found, installing the CUDA build of torch"
  python -m pip install -q torch
else
  echo "install.sh: no GPU found, installing the CPU build of torch 2.13.0"
  python -m pip install -q "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi

python -m pip install -q -e ".[test]"

if [ -f package.json ]; then
  if command -v npm >/dev/null 2>&1; then
    if [ -f package-lock.json ]; then npm ci --silent --no-audit --no-fund; else npm install --silent --no-audit --no-fund; fi
  else
    echo "install.sh: npm not found; the web tool needs Node.js/npm for its viewer (@niivue/niivue)" >&2
  fi
fi
echo "install.sh: done. Activate with: . .venv/bin/activate"
