#!/usr/bin/env bash
# Set up ft from nothing but Python 3.11+ and pip: a .venv with every package
# (editable), the CPU stack (torch 2.13.0, Ray, DeepSpeed with its CPU ops
# prebuilt), the dev tools (pytest, ruff, just). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
pip() { "$VPY" -m pip "$@"; }
pip install -q --upgrade pip
# torch first, pinned: here it resolves to a local CPU wheel, never a multi-GB CUDA build.
pip install -q "torch==2.13.0"
pip install -q "ray[train]==2.60.0" "transformers>=5,<6" "datasets>=2.14" jsonlines sqlglot "openai>=1" \
  click gguf accelerate safetensors tokenizers matplotlib sqlparse hatchling editables pytest ruff rust-just
# DeepSpeed compiles cpu_adam and shm_comm on first use (minutes); build them once, here.
if ! "$VPY" -c "import deepspeed" >/dev/null 2>&1; then  # its logger writes to stdout
  DS_BUILD_CPU_ADAM=1 DS_BUILD_SHM_COMM=1 pip install -q --no-build-isolation "deepspeed==0.19.8"
fi
pip install -q --no-build-isolation --no-deps -e packages/ft-common -e packages/ft-prep \
  -e packages/ft-score -e packages/ft-infer -e packages/ft-train
echo "setup: done (.venv); activate with: . .venv/bin/activate" >&2
