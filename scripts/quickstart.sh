#!/usr/bin/env bash
# Quickstart, from a fresh clone: set everything up, then the demo (`just demo`): SmolLM2-135M-Instruct
# scored on ViGGO validation records before and after fine-tuning, side by side (a short CPU run; the
# full recipe on a CUDA GPU). See `just --list`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
start=$SECONDS
.venv/bin/just demo
echo "quickstart: done; the demo took $((SECONDS - start)) s after setup; files in runs/demo" >&2
