#!/usr/bin/env bash
# Build every record file the GPU runs use (docs/results.md), with ft-prep, into
# ${1:-runs/data} (scripts/reproduce.sh's default). Deterministic: the same files on every run.
set -euo pipefail
out=${1:-runs/data}
data=${FT_DATA_DIR:-../shared/data}
mkdir -p "$out"
p() { ft-prep "$@" --data "$data" -q; }
# ViGGO: all 5,103 training rows, all 714 validation rows.
p viggo --split train -o "$out/viggo-train.jsonl"
p viggo --split valid -o "$out/viggo-valid.jsonl"
p viggo --split valid --format fewshot -o "$out/viggo-valid-fewshot.jsonl"
# SQL: 20,000 shuffled training rows (WikiSQL + Spider training databases, no tables needed);
# validation: 500 held-out Spider rows (real databases) and 500 WikiSQL dev rows (synthetic tables).
p sql --split train --tables none --shuffle --limit 20000 -o "$out/sql-train.jsonl"
p sql --source spider --split valid --shuffle --limit 500 -o "$out/sql-valid-spider.jsonl"
p sql --source wikisql --split valid --require-tables --shuffle --limit 500 -o "$out/sql-valid-wikisql.jsonl"
p sql --source spider --split valid --shuffle --limit 500 --format fewshot -o "$out/sql-valid-spider-fewshot.jsonl"
p sql --source wikisql --split valid --require-tables --shuffle --limit 500 --format fewshot -o "$out/sql-valid-wikisql-fewshot.jsonl"
# GSM8K: the 6,749-row train part and the 724-row validation carve-out; MathQA stage 1
# trains on the local dev + test files (the official train file is not in the local copy).
p gsm8k --split train -o "$out/gsm8k-train.jsonl"
p gsm8k --split valid -o "$out/gsm8k-valid.jsonl"
p gsm8k --split valid --format fewshot -o "$out/gsm8k-valid-fewshot.jsonl"
p mathqa --split valid -o "$out/mathqa-a.jsonl"
p mathqa --split test -o "$out/mathqa-b.jsonl"
cat "$out/mathqa-a.jsonl" "$out/mathqa-b.jsonl" > "$out/mathqa-train.jsonl"
rm "$out/mathqa-a.jsonl" "$out/mathqa-b.jsonl"
# The same rows in GSM8K's shape (no options, `#### <number>`); rows without one number are skipped.
p mathqa --split valid --answer value -o "$out/mathqa-a.jsonl"
p mathqa --split test --answer value -o "$out/mathqa-b.jsonl"
cat "$out/mathqa-a.jsonl" "$out/mathqa-b.jsonl" > "$out/mathqa-value-train.jsonl"
rm "$out/mathqa-a.jsonl" "$out/mathqa-b.jsonl"
wc -l "$out"/*.jsonl >&2
