#!/usr/bin/env bash
# Stage what the GPU machine lacks (it has torch, transformers and accelerate, no
# network) into pieces small enough to carry, one piece per device call.
#
#   bash scripts/gpu_stage.sh            # -> .carry/p0 .. .carry/pN (each <= 60 MiB)
#
# On the device, each call copies its piece to /tmp/stage (the machine stays warm
# between back-to-back calls), and the last one runs scripts/gpu_unstage.sh.
# What goes in: the wheels in .whl/ (ray, deepspeed built without ops, their
# missing dependencies, gguf, jsonlines, sqlglot), and the SmolLM2 GGUF. Records and other small inputs travel as their own carried folder.
set -euo pipefail
cd "$(dirname "$0")/.."
piece=${PIECE_BYTES:-62914560}
rm -rf .carry/p[0-9]* .carry/bundle.tar
mkdir -p .carry
tar -cf .carry/bundle.tar .whl models/SmolLM2-135M-Instruct.Q4_1.gguf
sha256sum .carry/bundle.tar | cut -d' ' -f1 > .carry/bundle.sha256
split -b "$piece" -d -a 1 .carry/bundle.tar .carry/part-
i=0
for part in .carry/part-*; do
  mkdir -p ".carry/p$i"
  mv "$part" ".carry/p$i/"
  i=$((i + 1))
done
cp .carry/bundle.sha256 ".carry/p$((i - 1))/"
rm .carry/bundle.tar
du -sh .carry/p*
