#!/usr/bin/env bash
# On the air-gapped GPU machine (tools/airgap-gpu/README.md): one phase of the 0.5B/1.5B
# runs of issue 14; completions, manifests, metrics and curves (no weights) packed into
# $OUT/PHASE.tgz, even when the call is cut short.
#
#   bash tools/airgap-gpu/scale_phase.sh S|A|B|C
#   S: Qwen2.5-Coder-0.5B fine-tuned on SQL (2 epochs) and ViGGO (the plain command), and few-shot
#   A: Qwen2.5-Coder-1.5B few-shot on SQL and ViGGO; fine-tuned on SQL (2 epochs)
#   B: Qwen2.5-Coder-1.5B fine-tuned on GSM8K (2 epochs) and 8-shot
#   C: Qwen2.5-Coder-0.5B fine-tuned on SQL, 4 epochs at lr 2e-4
#   The plain command (the default recipe, accuracy-selected checkpoints), each under 10 minutes:
#   D: Qwen2.5-Coder-1.5B fine-tuned on GSM8K
#   E: Qwen2.5-Coder-1.5B two-stage: MathQA, then GSM8K from its best checkpoint
#   F: Qwen2.5-Coder-1.5B fine-tuned on ViGGO and on SQL
#   G: Qwen2.5-Coder-0.5B fine-tuned on SQL and on ViGGO
set -uo pipefail
cd "$(dirname "$0")/../.."
phase=${1:?usage: scale_phase.sh S|A|B|C|D|E|F|G}
source tools/airgap-gpu/unstage.sh || exit 1
L=models/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf
S=models/Qwen2.5-Coder-0.5B-Instruct-AWQ.gguf
D=.carry/data
R=/tmp/runs/$phase; mkdir -p "$R"
timed() {  # NAME CMD...: run it, append its wall seconds to $R/times.jsonl
  local name=$1; shift; local s; s=$(date +%s.%N)
  "$@"; local rc=$?
  echo "{\"step\": \"$name\", \"rc\": $rc, \"wall_s\": $(python3 -c "import time; print(round(time.time() - $s, 1))")}" >> "$R/times.jsonl"
  log "$name rc=$rc"
}
train() {  # NAME MODEL TRAIN VALID FLAGS...
  local name=$1 model=$2 tr=$3 va=$4; shift 4
  timed "train-$name" ft-train -m "$model" --train "$tr" --valid "$va" -o "$R/$name" "$@" > "$R/$name.train.json" 2> "$R/$name.train.log"
  for f in ft-train.json metrics.jsonl curve.png; do cp "$R/$name/$f" "$R/$name.$f" 2>/dev/null; done
}
infer() {  # NAME MODEL RECORDS FLAGS...
  local name=$1 model=$2 records=$3; shift 3
  timed "infer-$name" ft-infer -q --engine hf -m "$model" "$records" -o "$R/$name.jsonl" "$@"
}
pack() { (cd "$R" && tar -czf "$OUT/$phase.tgz" --exclude='./*/checkpoints' --exclude='./*/best' --exclude='./*/state' .); }
trap pack EXIT
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >&2
case $phase in
  S)
    train ft-qwen0.5b-sql $S $D/sql-train.jsonl $D/sql-valid-wikisql.jsonl --epochs 2
    for part in spider wikisql; do infer "ft-qwen0.5b-$part" "$R/ft-qwen0.5b-sql/best" $D/sql-valid-$part.jsonl --max-new-tokens 160; done
    train ft-qwen0.5b-viggo $S $D/viggo-train.jsonl $D/viggo-valid.jsonl
    infer ft-qwen0.5b-viggo "$R/ft-qwen0.5b-viggo/best" $D/viggo-valid.jsonl --max-new-tokens 128
    infer fewshot-qwen0.5b-viggo $S $D/viggo-valid-fewshot.jsonl --max-new-tokens 128
    for part in spider wikisql; do infer "fewshot-qwen0.5b-$part" $S $D/sql-valid-$part-fewshot.jsonl --max-new-tokens 160; done
    ;;
  A)
    for part in spider wikisql; do infer "fewshot-qwen1.5b-$part" $L $D/sql-valid-$part-fewshot.jsonl --max-new-tokens 160; done
    infer fewshot-qwen1.5b-viggo $L $D/viggo-valid-fewshot.jsonl --max-new-tokens 128
    train ft-qwen1.5b-sql $L $D/sql-train.jsonl $D/sql-valid-wikisql.jsonl --epochs 2
    for part in spider wikisql; do infer "ft-qwen1.5b-$part" "$R/ft-qwen1.5b-sql/best" $D/sql-valid-$part.jsonl --max-new-tokens 160; done
    ;;
  B)
    train ft-qwen1.5b-gsm8k $L $D/gsm8k-train.jsonl $D/gsm8k-valid.jsonl --epochs 2
    infer ft-qwen1.5b-gsm8k "$R/ft-qwen1.5b-gsm8k/best" $D/gsm8k-valid.jsonl --max-new-tokens 320
    infer fewshot-qwen1.5b-gsm8k $L $D/gsm8k-valid-fewshot.jsonl --max-new-tokens 320
    ;;
  C)
    train ft-qwen0.5b-sql-e4 $S $D/sql-train.jsonl $D/sql-valid-wikisql.jsonl --epochs 4 --lr 2e-4
    for part in spider wikisql; do infer "ft-qwen0.5b-e4-$part" "$R/ft-qwen0.5b-sql-e4/best" $D/sql-valid-$part.jsonl --max-new-tokens 160; done
    ;;
  D)
    train ft-qwen1.5b-gsm8k-plain $L $D/gsm8k-train.jsonl $D/gsm8k-valid.jsonl
    infer ft-qwen1.5b-gsm8k-plain "$R/ft-qwen1.5b-gsm8k-plain/best" $D/gsm8k-valid.jsonl --max-new-tokens 320
    ;;
  E)
    train mathqa-qwen1.5b $L $D/mathqa-train.jsonl $D/gsm8k-valid.jsonl
    train two-stage-qwen1.5b "$R/mathqa-qwen1.5b/best" $D/gsm8k-train.jsonl $D/gsm8k-valid.jsonl
    infer two-stage-qwen1.5b "$R/two-stage-qwen1.5b/best" $D/gsm8k-valid.jsonl --max-new-tokens 320
    ;;
  F)
    train ft-qwen1.5b-viggo $L $D/viggo-train.jsonl $D/viggo-valid.jsonl
    infer ft-qwen1.5b-viggo "$R/ft-qwen1.5b-viggo/best" $D/viggo-valid.jsonl --max-new-tokens 128
    train ft-qwen1.5b-sql-plain $L $D/sql-train.jsonl $D/sql-valid-wikisql.jsonl
    for part in spider wikisql; do infer "ft-qwen1.5b-plain-$part" "$R/ft-qwen1.5b-sql-plain/best" $D/sql-valid-$part.jsonl --max-new-tokens 160; done
    ;;
  G)
    train ft-qwen0.5b-sql-plain $S $D/sql-train.jsonl $D/sql-valid-wikisql.jsonl
    for part in spider wikisql; do infer "ft-qwen0.5b-plain-$part" "$R/ft-qwen0.5b-sql-plain/best" $D/sql-valid-$part.jsonl --max-new-tokens 160; done
    train ft-qwen0.5b-viggo-plain $S $D/viggo-train.jsonl $D/viggo-valid.jsonl
    infer ft-qwen0.5b-viggo-plain "$R/ft-qwen0.5b-viggo-plain/best" $D/viggo-valid.jsonl --max-new-tokens 128
    ;;
  *) log "unknown phase $phase"; exit 2 ;;
esac
log "phase $phase done"
