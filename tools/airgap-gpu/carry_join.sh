#!/usr/bin/env bash
# On the GPU machine: join the pieces that tools/airgap-gpu/carry_split.sh made (each device
# call copied its folder's files into STAGE) into OUT, and check OUT's sha256.
#
#   bash tools/airgap-gpu/carry_join.sh STAGE OUT
set -euo pipefail
stage=${1:?usage: carry_join.sh STAGE OUT}
out=${2:?usage: carry_join.sh STAGE OUT}
cat "$stage"/part-* > "$out"
echo "$(cat "$stage/sha256")  $out" | sha256sum -c --quiet -
