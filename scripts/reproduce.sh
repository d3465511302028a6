#!/usr/bin/env bash
# The case study's runs with the ft commands: fine-tune, generate, score, per task.
#
#   bash scripts/reproduce.sh TASK [PHASE]     TASK: viggo | sql | gsm8k
#   PHASE: all (default) | generate (train + infer, for a GPU machine) | score
#
# Inputs: record files from scripts/make_gpu_data.sh in $DATA (default runs/data,
# built on first use); models: $SMALL (SmolLM2-135M-Instruct GGUF, fine-tuned and
# prompted) and $LARGE (Qwen2.5-Coder-1.5B-Instruct GGUF, prompted; skipped when the
# file is absent). Outputs in $RUNS/TASK (default runs/reproduce/TASK): each run's
# completions (NAME.jsonl), scores (NAME.scored.jsonl, NAME.summary.json) and the
# ft-train output folders. Epochs and batch sizes can be overridden by environment.
set -euo pipefail
cd "$(dirname "$0")/.."
task=${1:?usage: reproduce.sh viggo|sql|gsm8k [all|generate|score]}
phase=${2:-all}
DATA=${DATA:-runs/data}
RUNS=${RUNS:-runs/reproduce}
SMALL=${SMALL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
LARGE=${LARGE:-models/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf}
out="$RUNS/$task"
mkdir -p "$out"
[ -s "$DATA/viggo-train.jsonl" ] || bash scripts/make_gpu_data.sh "$DATA"
log() { echo "[reproduce $task] $*" >&2; }

train() {  # NAME MODEL TRAIN VALID [ft-train flags...]
  local name=$1 model=$2 tr=$3 va=$4; shift 4
  if [ -e "$out/$name/best" ]; then log "train $name: done already ($out/$name/best)"; return; fi
  log "train $name"
  # shellcheck disable=SC2086  # TRAIN_FLAGS is a list of extra flags
  ft-train -m "$model" --train "$tr" --valid "$va" -o "$out/$name" "$@" ${TRAIN_FLAGS:-} > "$out/$name.train.json"
}
infer() {  # NAME MODEL RECORDS [ft-infer flags...]
  local name=$1 model=$2 records=$3; shift 3
  if [ ! -e "$model" ]; then log "skip $name: no $model"; return; fi
  log "infer $name"
  ft-infer -m "$model" "$records" -o "$out/$name.jsonl" "$@"
}
score() {  # NAME SCORE-ARGS...
  local name=$1; shift
  [ -s "$out/$name.jsonl" ] || return 0
  log "score $name"
  ft-score "$@" "$out/$name.jsonl" -o "$out/$name.scored.jsonl" --summary "$out/$name.summary.json"
}

generate_viggo() {
  train ft-smollm2 "$SMALL" "$DATA/viggo-train.jsonl" "$DATA/viggo-valid.jsonl" \
    --epochs "${EPOCHS:-10}" --lr "${LR:-2e-4}"
  infer ft-smollm2 "$out/ft-smollm2/best" "$DATA/viggo-valid.jsonl" --max-new-tokens 128
  infer fewshot-smollm2 "$SMALL" "$DATA/viggo-valid-fewshot.jsonl" --max-new-tokens 128
  infer fewshot-qwen1.5b "$LARGE" "$DATA/viggo-valid-fewshot.jsonl" --max-new-tokens 128
}
score_viggo() {
  # Strict for the fine-tuned model, as trained; the first MR in the text for prompted ones.
  score ft-smollm2 viggo --extract strict
  for name in fewshot-smollm2 fewshot-qwen1.5b; do score "$name" viggo --extract first; done
}

generate_sql() {
  train ft-smollm2 "$SMALL" "$DATA/sql-train.jsonl" "$DATA/sql-valid-wikisql.jsonl" \
    --epochs "${EPOCHS:-3}" --lr "${LR:-2e-4}"
  for part in spider wikisql; do
    infer "ft-smollm2-$part" "$out/ft-smollm2/best" "$DATA/sql-valid-$part.jsonl" --max-new-tokens 160
    infer "fewshot-smollm2-$part" "$SMALL" "$DATA/sql-valid-$part-fewshot.jsonl" --max-new-tokens 160
    infer "fewshot-qwen1.5b-$part" "$LARGE" "$DATA/sql-valid-$part-fewshot.jsonl" --max-new-tokens 160
  done
}
score_sql() {
  for part in spider wikisql; do
    for name in ft-smollm2 fewshot-smollm2 fewshot-qwen1.5b; do
      score "$name-$part" sql ${DB_DIR:+--db-dir "$DB_DIR"}
    done
  done
}

generate_gsm8k() {
  train ft-smollm2 "$SMALL" "$DATA/gsm8k-train.jsonl" "$DATA/gsm8k-valid.jsonl" \
    --epochs "${EPOCHS:-6}" --lr "${LR:-1e-4}"
  # Two-stage: MathQA first, then GSM8K from the MathQA checkpoint.
  train mathqa-smollm2 "$SMALL" "$DATA/mathqa-train.jsonl" "$DATA/gsm8k-valid.jsonl" \
    --epochs "${STAGE1_EPOCHS:-3}" --lr "${LR:-1e-4}"
  train two-stage-smollm2 "$out/mathqa-smollm2/best" "$DATA/gsm8k-train.jsonl" "$DATA/gsm8k-valid.jsonl" \
    --epochs "${EPOCHS:-6}" --lr "${LR:-1e-4}"
  infer ft-smollm2 "$out/ft-smollm2/best" "$DATA/gsm8k-valid.jsonl" --max-new-tokens 320
  infer two-stage-smollm2 "$out/two-stage-smollm2/best" "$DATA/gsm8k-valid.jsonl" --max-new-tokens 320
  infer fewshot-smollm2 "$SMALL" "$DATA/gsm8k-valid-fewshot.jsonl" --max-new-tokens 320
  infer fewshot-qwen1.5b "$LARGE" "$DATA/gsm8k-valid-fewshot.jsonl" --max-new-tokens 320
}
score_gsm8k() {
  # Strict `#### N` for fine-tuned models, as trained; flexible for prompted ones.
  for name in ft-smollm2 two-stage-smollm2; do score "$name" gsm8k --extract strict; done
  for name in fewshot-smollm2 fewshot-qwen1.5b; do score "$name" gsm8k --extract flexible; done
}

case "$phase" in
  all) "generate_$task"; "score_$task" ;;
  generate) "generate_$task" ;;
  score) "score_$task" ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
esac
