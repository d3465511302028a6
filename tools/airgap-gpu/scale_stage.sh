#!/usr/bin/env bash
# Here (with network): everything scale_phase.sh needs on the air-gapped GPU machine, in
# pieces of at most 52 MiB, one per device call: .carry/s0 .. .carry/sN (the bundle: the
# wheels in .whl/, the record files from scripts/make_gpu_data.sh as .carry/data.tar.xz,
# the Qwen2.5-Coder 0.5B and 1.5B GGUFs) and .carry/src (a clean snapshot of HEAD's
# packages, carried with the phase call so work in progress never travels).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -d .whl ] || { echo "scale_stage: fill .whl first (README.md beside this script)" >&2; exit 1; }
bash scripts/make_gpu_data.sh .carry/data
(cd .carry && tar -cf - data | xz -T0 -6 > data.tar.xz)
rm -rf .carry/src && mkdir -p .carry/src && git archive HEAD packages | tar -x -C .carry/src
tar -cf .carry/bundle.tar .whl .carry/data.tar.xz "$(bash scripts/fetch_qwen_coder.sh models)" \
  "$(bash scripts/fetch_qwen_coder_0.5b.sh models)"
bash tools/airgap-gpu/carry_split.sh .carry/bundle.tar s
rm .carry/bundle.tar
