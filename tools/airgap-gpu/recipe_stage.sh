#!/usr/bin/env bash
# Here (with network): what recipe_phase.sh needs on the air-gapped GPU machine, in pieces of at
# most 52 MiB, one per device call: .carry/s0.. (the wheels in .whl/, the record files of
# scripts/make_gpu_data.sh, the SmolLM2 GGUF) and .carry/q0.. (the Qwen2.5-Coder-0.5B GGUF, for
# the 0.5B runs); .carry/src is a clean snapshot of HEAD's packages, carried with the phase call.
#
#   bash tools/airgap-gpu/recipe_stage.sh
#   then, one device call each: mkdir -p /tmp/stage && cp .carry/sN/* /tmp/stage/   (carry .carry/sN)
#                               mkdir -p /tmp/stageq && cp .carry/qN/* /tmp/stageq/ (carry .carry/qN)
#   and: bash tools/airgap-gpu/recipe_phase.sh NAME RUNS [MODEL]                  (carry .carry/src; .carry/prof too with MFU=1)
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -d .whl ] || { echo "recipe_stage: fill .whl first (README.md beside this script)" >&2; exit 1; }
bash scripts/make_gpu_data.sh .carry/data
(cd .carry && tar -cf - data | xz -T0 -6 > data.tar.xz)
tar -cf .carry/bundle.tar .whl .carry/data.tar.xz "$(bash scripts/fetch_smollm2.sh models)"
bash tools/airgap-gpu/carry_split.sh .carry/bundle.tar s
rm .carry/bundle.tar
bash tools/airgap-gpu/carry_split.sh "$(bash scripts/fetch_qwen_coder_0.5b.sh models)" q
rm -rf .carry/src && mkdir -p .carry/src && git archive HEAD packages | tar -x -C .carry/src
# For MFU=1: ViGGO's CSVs (bench_train.py reads them) and Qwen2.5-Coder-1.5B's config and tokenizer
# (from its de-quantized GGUF in ft's cache; random weights are made there), carried as .carry/prof.
rm -rf .carry/prof && mkdir -p .carry/prof/viggo .carry/prof/qwen
cp "${FT_DATA_DIR:-../shared/data}"/viggo/{train,valid}.csv .carry/prof/viggo/
# DS_ACCELERATOR: DeepSpeed, imported by transformers on the way, logs its accelerator guess to stdout.
qwen=$(DS_ACCELERATOR=cpu .venv/bin/python -c "import sys; from ft_common.models import resolve_model; print(resolve_model(sys.argv[1]).path)" \
  "$(bash scripts/fetch_qwen_coder.sh models)")
cp "$qwen"/{config.json,tokenizer.json,tokenizer_config.json,generation_config.json} .carry/prof/qwen/
