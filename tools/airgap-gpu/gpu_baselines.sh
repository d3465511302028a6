#!/usr/bin/env bash
# On the GPU machine (after gpu_unstage.sh and the Qwen pieces in /tmp/qstage): the
# prompted baselines of docs/results.md, with the same record files as the fine-tuned runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/airgap-gpu/gpu_env.sh
qwen=models/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf
if [ ! -s "$qwen" ]; then
  bash tools/airgap-gpu/carry_join.sh /tmp/qstage "$qwen"
  echo "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046  $qwen" | sha256sum -c --quiet -
fi
DATA=.carry/data
out=${RUNS:-/tmp/runs/reproduce}
mkdir -p "$out/viggo" "$out/sql" "$out/gsm8k"
run() { echo "[baselines] $1" >&2; ft-infer -m "$2" "$3" -o "$out/$1.jsonl" --max-new-tokens "$4"; }
run viggo/fewshot-smollm2 models/SmolLM2-135M-Instruct.Q4_1.gguf "$DATA/viggo-valid-fewshot.jsonl" 128
run viggo/fewshot-qwen1.5b "$qwen" "$DATA/viggo-valid-fewshot.jsonl" 128
run sql/fewshot-qwen1.5b-spider "$qwen" "$DATA/sql-valid-spider-fewshot.jsonl" 160
run sql/fewshot-qwen1.5b-wikisql "$qwen" "$DATA/sql-valid-wikisql-fewshot.jsonl" 160
run gsm8k/fewshot-qwen1.5b "$qwen" "$DATA/gsm8k-valid-fewshot.jsonl" 320
