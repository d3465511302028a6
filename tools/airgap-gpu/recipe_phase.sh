#!/usr/bin/env bash
# On the air-gapped GPU machine: issue 13's time-to-accuracy runs (bench/time_to_accuracy.py),
# after earlier calls copied the bundle pieces (.carry/sN, from carry_split.sh) to /tmp/stage and,
# for the 0.5B runs, the model's pieces (.carry/qN) to /tmp/stageq. The phase call carries
# .carry/src (a snapshot of the packages). Results, manifests, metrics, logs and completions
# (no weights) are packed into $OUT/NAME.tgz even when the call is cut short.
#
#   bash tools/airgap-gpu/recipe_phase.sh NAME RUNS [MODEL]
#   RUNS: comma-separated names from `python bench/time_to_accuracy.py --list`, or none
#   EXTRA_BENCH=1 first runs bench/bench_loss.py, bench_compile.py and bench_overhead.py (about 6 minutes)
#   PREP_PROFILE=1: ft-train's prepare (--dry-run, ViGGO) under cProfile and -X importtime, cold and warm token cache
#   DECODE_BENCH=1: bench/bench_decode_graphs.py (validation decoding eager vs from a CUDA graph) on ViGGO
#   DECODE_BENCH_RUN=RUN: the same after the runs, on RUN's best checkpoint (a ViGGO run)
#   GRAPHS_BENCH=1 first runs bench/bench_graphs.py (eager vs --cuda-graphs steps; GRAPHS_STEPS, default 160)
#   RECORD=RUN[,RUN]: those runs' ft-train on a pty under `script` (RUN.terminal.txt: the user's terminal)
#   ENGINES=hf,vllm: each run's best checkpoint also served by these engines in float32 and their verdicts
#   compared (time_to_accuracy.py --engines); vLLM from /tmp/vstage, the pieces of vllm_stage.sh
#   PROFILE15=1: bench/gpu_profile.py at 1.5B, the plain batch eager and --compile'd (carry .carry/prof);
#   PROFILE15_ONLY: which variants (default "group 4k"; "flat 4k": the flat step, and with the gradients added)
#   PROFILE135=1 then runs bench/gpu_profile.py on MODEL's config: the plain command's 135M step (6,144 tokens,
#   compiled, replayed from the step graphs, and compiled eagerly; other vocabulary and attention variants),
#   with torch.profiler tables; PROFILE135_ONLY: which variants (gpu_profile.py --only, |-separated)
#   HEAD_BENCH=1 first runs bench/bench_head_matmul.py (the LM head's matmuls per loss chunk, by layout, at 1.5B's head)
#   MFU=1 then runs (MFU_LEGS: a comma-separated subset of viggo,viggo-16k,long,long-16k,viggo-compile,viggo-compile-eager,long-compile,viggo-compile-graphs,long-compile-graphs) bench/bench_train.py at 1.5B (Qwen2.5-1.5B's config from .carry/prof/qwen, random weights;
#   carry .carry/prof): ViGGO rows and 2,048-token rows, at the plain batch and at 16k-token batches
set -uo pipefail
cd "$(dirname "$0")/../.."
name=${1:?usage: recipe_phase.sh NAME RUNS [MODEL]}
runs=${2:?usage: recipe_phase.sh NAME RUNS [MODEL]}
model=${3:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
source tools/airgap-gpu/unstage.sh || exit 1
if [ -d /tmp/stageq ] && [ ! -s models/Qwen2.5-Coder-0.5B-Instruct-AWQ.gguf ]; then
  bash tools/airgap-gpu/carry_join.sh /tmp/stageq models/Qwen2.5-Coder-0.5B-Instruct-AWQ.gguf || exit 1
fi
# Record files made after the bundle (e.g. mathqa-value-train.jsonl), carried as .carry/extra
[ -d .carry/extra ] && cp .carry/extra/*.jsonl .carry/data/
W=/tmp/tta/$name; mkdir -p "$W"
pack() { (cd "$W" && tar -czf "$OUT/$name.tgz" --exclude='./*/checkpoints' --exclude='./*/best' --exclude='./*/state' \
  --exclude='./*/.work' .); }
trap pack EXIT
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >&2
# The SQL checker's jail (seccomp, rlimits) on this host: five references scored as completions.
head -5 .carry/data/sql-valid-wikisql.jsonl | python3 -c 'import json,sys; [print(json.dumps({**r, "completion": r["meta"]["reference"], "finish_reason": "stop"})) for r in map(json.loads, sys.stdin)]' \
  | ft-score sql -q --summary /tmp/preflight.json > /dev/null && cat /tmp/preflight.json >&2 || log "sql checker preflight failed"
if [ -n "${EXTRA_BENCH:-}" ]; then  # the fused loss and --compile in bf16, seconds before/after training per --launch
  timeout 120 python3 bench/bench_loss.py --out "$W/bench_loss.json" >&2 || log "bench_loss failed"
  timeout 150 python3 bench/bench_compile.py --model "$model" --device cuda --dtype bfloat16 --modes eager,blocks \
    --shapes 16x384,16x384,12x512,24x256 --out "$W/bench_compile.json" >&2 || log "bench_compile failed"
  timeout 240 python3 bench/bench_overhead.py --model "$model" --device cuda --runs 2 --data .carry/data \
    --rows 1000 --ft-args "--epochs 1 --select-by ppl" --out "$W/bench_overhead.json" >&2 || log "bench_overhead failed"
fi
if [ -n "${GRAPHS_BENCH:-}" ]; then  # eager vs CUDA-graph steps on ViGGO's plan: ms/step, tokens/s, and that they agree
  timeout 300 python3 bench/bench_graphs.py --model "$model" --train .carry/data/viggo-train.jsonl \
    --valid .carry/data/viggo-valid.jsonl --steps "${GRAPHS_STEPS:-160}" --skip 30 --out "$W/bench_graphs.json" >&2 \
    || log "bench_graphs failed"
  python3 -c "import pytest" 2>/dev/null && FT_TEST_DATA=$PWD/.carry/prof timeout 120 python3 -m pytest -q \
    -p no:cacheprovider tests/train/test_step_graphs.py > "$W/test_step_graphs.txt" 2>&1  # carry .carry/prof
fi
if [ -n "${HEAD_BENCH:-}" ]; then  # which layout of the head's chunk matmuls gets cuBLAS's faster kernels
  timeout 180 python3 bench/bench_head_matmul.py --graphs --out "$W/bench_head_matmul.json" >&2 || log "bench_head_matmul failed"
fi
decode_bench() {  # MODEL OUT: the validation decode (--select-by accuracy) eager vs replayed from a CUDA graph
  timeout 240 python3 bench/bench_decode_graphs.py --model "$1" --valid .carry/data/viggo-valid.jsonl \
    --out "$W/$2" >&2 || log "bench_decode_graphs on $1 failed"
}
[ -n "${DECODE_BENCH:-}" ] && decode_bench "$model" bench_decode_graphs.json
# The acceptance's wall time is with the model already de-quantized in the cache: do that first, once.
python3 -c "import sys; from ft_common.models import resolve_model; print(resolve_model(sys.argv[1]).path)" "$model" >&2
if [ -n "${PREP_PROFILE:-}" ]; then  # where this host's seconds before the first step go: ft-train's prepare under
  # cProfile, and every import's time (-X importtime), on ViGGO with an empty token cache; then once more, cached
  for pass in cold warm; do
    [ $pass = cold ] && rm -rf "$FT_CACHE/tokens"
    rm -rf /tmp/prep-dry && python3 -X importtime -m cProfile -o "$W/prepare-$pass.prof" "$(command -v ft-train)" -m "$model" \
      --train .carry/data/viggo-train.jsonl --valid .carry/data/viggo-valid.jsonl -o /tmp/prep-dry --dry-run -q \
      > /dev/null 2> "$W/prepare-$pass.importtime.txt" || log "prepare profile ($pass) failed"
  done
fi
if [ -n "${ENGINES:-}" ] && [ -d /tmp/vstage ]; then  # vLLM's pieces (vllm_stage.sh) copied there
  if [ ! -e /tmp/vsite.done ]; then
    rm -rf /tmp/vsite && bash tools/airgap-gpu/vllm_unstage.sh && touch /tmp/vsite.done || log "vllm unstage failed"
  fi
  # vLLM's wheels on the path only for the phases that serve with it
  [ -e /tmp/vsite.done ] && export PYTHONPATH=/tmp/vsite:$PYTHONPATH
  export VLLM_USE_FLASHINFER_SAMPLER=0  # flashinfer is not carried; vLLM's sampler imports it unguarded
fi
[ "$runs" = none ] || timeout "${PHASE_TIMEOUT:-540}" python3 bench/time_to_accuracy.py --data .carry/data --model "$model" --runs "$runs" \
  --out "$W/time_to_accuracy.json" --work "$W" --record "${RECORD:-}" ${ENGINES:+--engines "$ENGINES"}
if [ -n "${DECODE_BENCH_RUN:-}" ] && [ -e "$W/$DECODE_BENCH_RUN/best" ]; then  # the same on a fine-tuned checkpoint
  decode_bench "$W/$DECODE_BENCH_RUN/best" "bench_decode_graphs_$DECODE_BENCH_RUN.json"
fi
if [ -n "${PROFILE135:-}" ]; then  # where the plain command's step goes at 135M (random weights, its config); after the
  # runs, so that their compiles find inductor's cache as a user's first run does
  timeout 300 python3 bench/gpu_profile.py --model-dir "$model" --records .carry/data --parts train \
    --only "${PROFILE135_ONLY:-group 6k}" --steps 60 --out "$W/gpu_profile_135m" >&2 || log "gpu_profile at 135M failed"
fi
if [ -n "${PROFILE15:-}" ]; then  # where a 1.5B step's time goes (Qwen2.5-1.5B's config, random weights; carry
  # .carry/prof): ft-train's step at the plain 4,096-token batch, eager and compiled, with torch.profiler tables
  timeout 420 python3 bench/gpu_profile.py --model-dir .carry/prof/qwen --records .carry/data --parts train \
    --only "${PROFILE15_ONLY:-group 4k}" --steps 30 --out "$W/gpu_profile_1.5b" >&2 || log "gpu_profile at 1.5B failed"
fi
if [ -n "${MFU:-}" ]; then
  python3 - <<'PY' >&2
import torch, transformers
cfg = transformers.AutoConfig.from_pretrained(".carry/prof/qwen")
transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).save_pretrained("/tmp/qwen1.5b-random")
transformers.AutoTokenizer.from_pretrained(".carry/prof/qwen").save_pretrained("/tmp/qwen1.5b-random")
PY
  mfu() {  # TAG BATCH_FLAGS BENCH_FLAGS...: one ft-train run at 1.5B; selection by perplexity (random weights)
    local tag=$1 batch=$2; shift 2
    timeout 150 python3 bench/bench_train.py --mode throughput --legs default --model /tmp/qwen1.5b-random \
      --data-dir .carry/prof --ft-args "--select-by ppl $batch" --out "/tmp/mfu/$tag" "$@" >&2 || log "mfu $tag failed"
    cp "/tmp/mfu/$tag/bench_train.json" "$W/mfu-1.5b-$tag.json" 2>/dev/null
    cp "/tmp/mfu/$tag/ft-default/metrics.jsonl" "$W/mfu-1.5b-$tag.metrics.jsonl" 2>/dev/null
    cp "/tmp/mfu/$tag/ft-default/ft-train.json" "$W/mfu-1.5b-$tag.ft-train.json" 2>/dev/null
  }
  legs=",${MFU_LEGS:-viggo,viggo-16k,long,long-16k},"  # which of the four legs
  [[ $legs == *,viggo,* ]] && mfu viggo "" --rows 2500
  [[ $legs == *,viggo-16k,* ]] && mfu viggo-16k "--batch-tokens 16384" --rows 2500
  [[ $legs == *,long,* ]] && mfu long "" --long 2048
  [[ $legs == *,long-16k,* ]] && mfu long-16k "--batch-tokens 16384" --long 2048
  # the plain batch with the blocks compiled (--compile, ft_train/compile.py: fused norms, SwiGLU, rotary)
  [[ $legs == *,viggo-compile,* ]] && mfu viggo-compile "--compile" --rows 2500
  [[ $legs == *,viggo-compile-eager,* ]] && mfu viggo-compile-eager "--compile --cuda-graphs off" --rows 2500
  [[ $legs == *,long-compile,* ]] && mfu long-compile "--compile" --long 2048
  # the compiled blocks inside the step graphs
  [[ $legs == *,viggo-compile-graphs,* ]] && mfu viggo-compile-graphs "--compile --cuda-graphs on" --rows 2500
  [[ $legs == *,long-compile-graphs,* ]] && mfu long-compile-graphs "--compile --cuda-graphs on" --long 2048
fi
log "phase $name done"
