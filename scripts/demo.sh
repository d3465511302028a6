#!/usr/bin/env bash
# The demo (`just demo`): does fine-tuning teach SmolLM2-135M-Instruct ViGGO? The same validation
# records are scored before fine-tuning (the base model, the same special-token prompts) and after,
# and the two are printed side by side.
#
#   bash scripts/demo.sh [OUT]        OUT: default runs/demo (replaced on each run)
#
# On the CPU it is sized to finish in under 10 minutes on 2 cores: DEMO_ROWS shuffled training rows
# for DEMO_EPOCHS epochs (batch DEMO_BATCH, peak lr DEMO_LR), DEMO_EVAL validation records,
# DEMO_MAX_NEW_TOKENS tokens per completion. With a CUDA GPU (torch.cuda.is_available()) it runs
# the full ViGGO recipe instead, scripts/reproduce.sh viggo, and prints the same table for it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/demo}
data=${FT_DATA_DIR:-../shared/data}
rows=${DEMO_ROWS:-400} epochs=${DEMO_EPOCHS:-1} batch=${DEMO_BATCH:-4} lr=${DEMO_LR:-5e-4}
n_eval=${DEMO_EVAL:-20} max_new=${DEMO_MAX_NEW_TOKENS:-80}
export PATH="$PWD/.venv/bin:$PATH"
model=$(bash scripts/fetch_smollm2.sh models)
log() { echo "demo: $*" >&2; }
step_start=$SECONDS
took() { local s=$((SECONDS - step_start)); step_start=$SECONDS; times+=("$1 ${s}s"); }
times=()

# table TITLE LABEL=SUMMARY.json ...: the runs side by side (ft-score's --summary files).
table() {
  python - "$@" <<'EOF'
import json, sys
title, runs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
s = [json.load(open(path)) for _, path in runs]
rows = [("records", lambda x: str(x["n"])),
        ("accuracy", lambda x: f'{x["correct"]}/{x["n"]} = {100 * x["accuracy"]:.1f}%'),
        ("function accuracy", lambda x: f'{100 * x["metrics"]["function"]:.1f}%'),
        ("value F1", lambda x: f'{x["metrics"]["value_f1"]:.3f}'),
        ("cut at the token limit", lambda x: str(x["truncated"])),
        ("mean completion tokens", lambda x: f'{x["mean_completion_tokens"]:.1f}')]
width = max(14, *(len(label) for label, _ in runs))
print(f"\n{title}\n")
print(f'{"":24}' + "".join(f"{label:>{width + 2}}" for label, _ in runs))
for name, cell in rows:
    print(f"{name:24}" + "".join(f"{cell(x):>{width + 2}}" for x in s))
print()
EOF
}

if python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  log "CUDA GPU found: running the full ViGGO recipe instead (scripts/reproduce.sh viggo: 5,103 rows, 10 epochs, 714 validation records)"
  rm -rf "$out" && mkdir -p "$out/data"
  # Only ViGGO's records: reproduce.sh builds every task's (minutes of SQL tables) when they are missing.
  for split in train valid; do ft-prep viggo --data "$data" --split $split -q -o "$out/data/viggo-$split.jsonl"; done
  ft-prep viggo --data "$data" --split valid --format fewshot -q -o "$out/data/viggo-valid-fewshot.jsonl"
  DATA="$out/data" RUNS="$out" SMALL="$model" bash scripts/reproduce.sh viggo
  r="$out/viggo"
  ft-infer -m "$model" "$out/data/viggo-valid.jsonl" --max-new-tokens 128 -q -o "$r/base.jsonl"
  ft-score viggo "$r/base.jsonl" -q -o "$r/base.scored.jsonl" --summary "$r/base.summary.json"
  table "ViGGO validation, SmolLM2-135M-Instruct: base (same prompts), 9-shot prompt, fine-tuned" \
    "before=$r/base.summary.json" "9-shot=$r/fewshot-smollm2.summary.json" "after=$r/ft-smollm2.summary.json"
  exit 0
fi
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 &&
  log "a GPU is here but this torch has no CUDA (bash scripts/setup_gpu.sh installs it); running the CPU demo"

log "CPU: $rows ViGGO rows x $epochs epoch(s), then $n_eval validation records scored before and after"
rm -rf "$out" && mkdir -p "$out"
ft-prep viggo --data "$data" --split train --shuffle --limit "$rows" -q -o "$out/train.jsonl"
# Shuffled validation records: the first DEMO_EVAL are scored, the next ones give ft-train its
# validation perplexity (kept apart, so choosing the best epoch never looks at the scored records).
ft-prep viggo --data "$data" --split valid --shuffle --limit $((2 * n_eval)) -q -o "$out/valid-all.jsonl"
head -n "$n_eval" "$out/valid-all.jsonl" > "$out/eval.jsonl"
tail -n +$((n_eval + 1)) "$out/valid-all.jsonl" > "$out/valid.jsonl"
took prep

log "before: the base model on the $n_eval records"
ft-infer -m "$model" "$out/eval.jsonl" --max-new-tokens "$max_new" -o "$out/before.jsonl"
ft-score viggo "$out/before.jsonl" -q -o "$out/before.scored.jsonl" --summary "$out/before.summary.json"
took before

log "fine-tuning (ft-train; its log: $out/ft/train.log)"
mkdir -p "$out/ft"
ft-train -m "$model" --train "$out/train.jsonl" --valid "$out/valid.jsonl" -o "$out/ft/run" \
  --epochs "$epochs" --batch-size "$batch" --lr "$lr" --seed 0 2> >(tee "$out/ft/train.log" >&2) > "$out/ft/result.json"
took train

log "after: the fine-tuned model on the same records"
ft-infer -m "$out/ft/run/best" "$out/eval.jsonl" --max-new-tokens "$max_new" -o "$out/after.jsonl"
ft-score viggo "$out/after.jsonl" -q -o "$out/after.scored.jsonl" --summary "$out/after.summary.json"
took after

steps=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["resolved"]["total_steps"])' "$out/ft/run/ft-train.json" 2>/dev/null || echo "?")
table "ViGGO, $n_eval validation records, SmolLM2-135M-Instruct before and after fine-tuning on $rows rows x $epochs epoch ($steps optimizer steps)" \
  "before=$out/before.summary.json" "after=$out/after.summary.json"
echo "time: ${times[*]}; total $SECONDS s. Files: $out/{before,after}.scored.jsonl, *.summary.json, ft/run/" >&2
