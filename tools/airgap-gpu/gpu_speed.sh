#!/usr/bin/env bash
# On the air-gapped GPU machine, after gpu_unstage.sh: the speed benchmarks of ft-infer and
# ft-train (docs/benchmarks.md), logs and JSON to $OUT (or /tmp/speed).
#
#   bash tools/airgap-gpu/gpu_speed.sh infer-viggo   # bench_infer (naive, hf, hf-static) + ViGGO time-to-model
#   FT_ARGS=... bash tools/airgap-gpu/gpu_speed.sh viggo  # ViGGO default (+ FT_ARGS), fp32 naive vs hf outputs
#   bash tools/airgap-gpu/gpu_speed.sh tp-135m       # default vs plain loop vs the case study, SmolLM2-135M
#   bash tools/airgap-gpu/gpu_speed.sh tp-1.5b       # the same at 1.5B (Qwen2.5-1.5B's config, random weights)
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/airgap-gpu/gpu_env.sh
out=${OUT:-/tmp/speed}
mkdir -p "$out"
gguf=models/SmolLM2-135M-Instruct.Q4_1.gguf
data=${DATA_DIR:-.carry/shared}
records=${RECORDS:-.carry/prof/viggo-valid.jsonl}
case "${1:?usage: gpu_speed.sh infer-viggo|viggo|tp-135m|tp-1.5b}" in
  infer-viggo)
    python3 bench/bench_infer.py --model "$gguf" --records "$records" --engines naive,hf,hf-static \
      --out "$out/bench_infer.json" 2>&1 | tee "$out/bench_infer.log"
    python3 bench/bench_train.py --mode viggo --model "$gguf" --data-dir "$data" --out /tmp/runs/viggo-default \
      2>&1 | tee "$out/bench_train_viggo.log"
    cp /tmp/runs/viggo-default/bench_train.json "$out/bench_train_viggo.json"
    ;;
  viggo)  # ft-train's default on ViGGO, then the same with FT_ARGS (e.g. "--batch-tokens 24576"),
          # and greedy outputs of naive generate vs the hf engine in float32 (no bf16 near-ties)
    python3 bench/bench_train.py --mode viggo --model "$gguf" --data-dir "$data" --out /tmp/runs/viggo-default \
      2>&1 | tee "$out/bench_train_viggo.log"
    cp /tmp/runs/viggo-default/bench_train.json "$out/bench_train_viggo.json"
    if [ -n "${FT_ARGS:-}" ]; then
      python3 bench/bench_train.py --mode viggo --model "$gguf" --data-dir "$data" --out /tmp/runs/viggo-args \
        --ft-args "$FT_ARGS" 2>&1 | tee "$out/bench_train_viggo_args.log"
      cp /tmp/runs/viggo-args/bench_train.json "$out/bench_train_viggo_args.json"
    fi
    python3 bench/bench_infer.py --model "$gguf" --records "$records" --engines naive,hf --dtype float32 \
      --limit 256 --out "$out/bench_infer_fp32.json" 2>&1 | tee "$out/bench_infer_fp32.log"
    ;;
  tp-135m)
    python3 bench/bench_train.py --mode throughput --model "$gguf" --data-dir "$data" --rows 2500 \
      --case-study-rows 1000 --out /tmp/runs/tp-135m 2>&1 | tee "$out/bench_train_tp_135m.log"
    cp /tmp/runs/tp-135m/bench_train.json "$out/bench_train_tp_135m.json"
    ;;
  tp-1.5b)
    # The 1.5B model's weights do not matter for speed: random ones, from its config (.carry/prof/qwen).
    python3 - <<'PY'
import torch, transformers
cfg = transformers.AutoConfig.from_pretrained(".carry/prof/qwen")
model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
model.save_pretrained("/tmp/qwen1.5b-random")
transformers.AutoTokenizer.from_pretrained(".carry/prof/qwen").save_pretrained("/tmp/qwen1.5b-random")
PY
    python3 bench/bench_train.py --mode throughput --model /tmp/qwen1.5b-random --data-dir "$data" --rows 2500 \
      --legs ${LEGS:-default,plain,case} --case-study-rows 320 --out /tmp/runs/tp-1.5b 2>&1 | tee "$out/bench_train_tp_1.5b.log"
    cp /tmp/runs/tp-1.5b/bench_train.json "$out/bench_train_tp_1.5b.json"
    ;;
esac
