#!/usr/bin/env bash
# Split FILE into pieces of at most 44 MiB for the GPU machine (a call carries the checkout too,
# about 14 MiB of tracked files now, under its 64 MiB: 52 MiB pieces were refused), one carried folder
# per device call: .carry/PREFIX0, .carry/PREFIX1, ... (each holding part-NN); the
# last folder also holds FILE's sha256, which tools/airgap-gpu/carry_join.sh checks there.
#
#   bash tools/airgap-gpu/carry_split.sh FILE PREFIX
set -euo pipefail
src=${1:?usage: carry_split.sh FILE PREFIX}
prefix=${2:?usage: carry_split.sh FILE PREFIX}
piece=${PIECE_BYTES:-46137344}
mkdir -p .carry
rm -rf ".carry/$prefix"[0-9]*
tmp=$(mktemp -d .carry/split.XXXXXX)
split -b "$piece" -d -a 2 "$src" "$tmp/part-"
i=0
for part in "$tmp"/part-*; do
  mkdir -p ".carry/$prefix$i"
  mv "$part" ".carry/$prefix$i/"
  i=$((i + 1))
done
rmdir "$tmp"
sha256sum "$src" | cut -d' ' -f1 > ".carry/$prefix$((i - 1))/sha256"
echo "$src: $i pieces in .carry/${prefix}0 .. .carry/${prefix}$((i - 1))" >&2
