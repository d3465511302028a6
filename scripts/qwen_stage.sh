#!/usr/bin/env bash
# Split the Qwen2.5-Coder-1.5B GGUF (1.1 GB; scripts/fetch_qwen_coder.sh) into
# pieces of at most 60 MiB under .carry/q0, .carry/q1, ... for the GPU machine;
# there, each call copies its piece to /tmp/qstage and the last one joins them:
#   cat /tmp/qstage/part-* > models/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf
# and checks the sha256 pinned in scripts/fetch_qwen_coder.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
gguf=$(bash scripts/fetch_qwen_coder.sh models)
rm -rf .carry/q[0-9]*
mkdir -p .carry/qsplit
split -b "${PIECE_BYTES:-62914560}" -d -a 2 "$gguf" .carry/qsplit/part-
i=0
for part in .carry/qsplit/part-*; do
  mkdir -p ".carry/q$i"
  mv "$part" ".carry/q$i/"
  i=$((i + 1))
done
rmdir .carry/qsplit
echo "$i pieces" >&2
