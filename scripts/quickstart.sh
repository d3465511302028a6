#!/usr/bin/env bash
# Quickstart, from a fresh clone: set everything up, then run the main job on its default
# (SmolLM2-135M-Instruct fine-tuned on ViGGO: a short CPU run; see `just --list`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/just demo
echo "quickstart: done; results in runs/demo (summary.json, scored.jsonl, ft/)" >&2
