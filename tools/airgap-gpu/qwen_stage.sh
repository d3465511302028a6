#!/usr/bin/env bash
# Split the Qwen2.5-Coder-1.5B GGUF (1.1 GB; scripts/fetch_qwen_coder.sh) into
# pieces of at most 52 MiB under .carry/q0, .carry/q1, ... for the GPU machine;
# there, each call copies its piece to /tmp/qstage, and tools/airgap-gpu/gpu_baselines.sh joins
# them (tools/airgap-gpu/carry_join.sh) and checks the sha256 pinned in fetch_qwen_coder.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/airgap-gpu/carry_split.sh "$(bash scripts/fetch_qwen_coder.sh models)" q
