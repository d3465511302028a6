#!/usr/bin/env bash
# Stage what the GPU machine lacks (it has torch, transformers and accelerate, no
# network) into pieces small enough to carry, one piece per device call.
#
#   bash tools/airgap-gpu/gpu_stage.sh            # -> .carry/p0 .. .carry/pN (each <= 52 MiB)
#
# On the device, each call copies its piece to /tmp/stage (the machine stays warm
# between back-to-back calls), and the last one runs tools/airgap-gpu/gpu_unstage.sh.
# What goes in: the wheels in .whl/ (ray, deepspeed built without ops, their
# missing dependencies, gguf, jsonlines, sqlglot), and the SmolLM2 GGUF. Records and other small inputs travel as their own carried folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .carry
tar -cf .carry/bundle.tar .whl models/SmolLM2-135M-Instruct.Q4_1.gguf
bash tools/airgap-gpu/carry_split.sh .carry/bundle.tar p
rm .carry/bundle.tar
