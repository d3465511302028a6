#!/usr/bin/env bash
# The GPU stack in .venv, on a Linux machine with a CUDA GPU, its driver, the CUDA toolkit (nvcc)
# and network: CUDA torch (the build vllm pins), vllm, DeepSpeed with its fused_adam and cpu_adam
# ops compiled for this machine's GPUs, Ray and the five packages. Safe to run again: what is
# already right is left alone (pip's own checks; DeepSpeed is rebuilt only when its ops are missing
# or were built for another torch or CUDA).
#
#   bash scripts/setup_gpu.sh
#
# Environment: PYTHON (python3), VLLM_VERSION (0.33.0), CUDA_VARIANT (cu129: the PyTorch index
# vllm's PyPI wheels are built against), TORCH_CUDA_ARCH_LIST (default: the visible GPUs'
# compute capabilities, e.g. 9.0 on an H100/H200), DS_OPS (FUSED_ADAM CPU_ADAM), MAX_JOBS.
# The CPU-only machine's setup is scripts/setup.sh; a GPU machine without network:
# tools/airgap-gpu/ (its README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VLLM_VERSION=${VLLM_VERSION:-0.33.0}
CUDA_VARIANT=${CUDA_VARIANT:-cu129}
DEEPSPEED_VERSION=0.19.8   # as scripts/setup.sh
DS_OPS=${DS_OPS:-FUSED_ADAM CPU_ADAM}
log() { echo "setup_gpu: $*" >&2; }
die() { echo "setup_gpu: error: $*" >&2; exit 1; }

command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 \
  || die "no CUDA GPU (nvidia-smi finds none); on a CPU machine use scripts/setup.sh"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
pip() { "$VPY" -m pip "$@"; }
pip install -q --upgrade pip

# 1. vllm first, in one resolve with everything else, so that its exact torch pin (a CUDA build
#    from the PyTorch index of CUDA_VARIANT) and its transformers range hold for the whole set.
#    The list is scripts/setup.sh's, torch left to vllm; DeepSpeed's dependencies come here too,
#    because DeepSpeed itself is built below with --no-deps.
log "vllm $VLLM_VERSION, CUDA torch ($CUDA_VARIANT), Ray and the rest"
pip install -q --extra-index-url "https://download.pytorch.org/whl/$CUDA_VARIANT" "vllm==$VLLM_VERSION" \
  "ray[train]==2.60.0" "transformers>=5,<6" "datasets>=2.14" jsonlines sqlglot "openai>=1" click gguf \
  accelerate safetensors tokenizers matplotlib sqlparse hatchling editables pytest ruff rust-just \
  einops hjson msgpack ninja numpy "packaging>=20" psutil py-cpuinfo "pydantic>=2" tqdm
read -r torch_mm torch_cuda ngpu caps < <("$VPY" - <<'EOF'
import torch
if not torch.cuda.is_available() or not torch.version.cuda:
    raise SystemExit(f"setup_gpu: error: torch {torch.__version__} does not see a CUDA GPU")
caps = sorted({"%d.%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
print(".".join(torch.__version__.split("+")[0].split(".")[:2]), torch.version.cuda, torch.cuda.device_count(),
      ";".join(caps))
EOF
)
log "torch $torch_mm (CUDA $torch_cuda) sees $ngpu GPU(s), compute capability $caps"

# 2. DeepSpeed's ops, compiled now rather than on the first ft-train run. TORCH_CUDA_ARCH_LIST
#    names the architectures to build for; DeepSpeed reads each entry as MAJOR.MINOR[+PTX], so
#    arch-specific suffixes (9.0a, 10.0f, as some images set them) are dropped: the plain 9.0
#    build runs on the same GPU. nvcc's major version must match torch's CUDA (DeepSpeed checks).
arch=$(echo "${TORCH_CUDA_ARCH_LIST:-$caps}" | tr ' ,' ';;' | sed -E 's/([0-9]+\.[0-9]+)[af]/\1/g')
export TORCH_CUDA_ARCH_LIST=$arch
want=$(for op in $DS_OPS; do echo "$op" | tr '[:upper:]' '[:lower:]'; done | paste -sd' ')
if "$VPY" - "$torch_mm" "$torch_cuda" $want <<'EOF' 2>/dev/null; then
import sys
from deepspeed.git_version_info import installed_ops, torch_info
mm, cuda, ops = sys.argv[1], ".".join(sys.argv[2].split(".")[:2]), sys.argv[3:]
ok = torch_info["version"] == mm and torch_info["cuda_version"] == cuda and all(installed_ops.get(o) for o in ops)
sys.exit(0 if ok else 1)
EOF
  log "DeepSpeed $DEEPSPEED_VERSION: ops ($want) already built for torch $torch_mm, CUDA $torch_cuda"
else
  nvcc=${CUDA_HOME:+$CUDA_HOME/bin/}nvcc
  command -v "$nvcc" >/dev/null || die "no nvcc (the CUDA toolkit) to build DeepSpeed's ops: install it or set CUDA_HOME"
  nvcc_major=$("$nvcc" --version | sed -nE 's/.*release ([0-9]+)\..*/\1/p')
  [ "$nvcc_major" = "${torch_cuda%%.*}" ] || die "nvcc is CUDA $nvcc_major, torch is CUDA $torch_cuda: \
set CUDA_HOME to a CUDA ${torch_cuda%%.*} toolkit, or CUDA_VARIANT to a matching PyTorch index"
  flags=$(for op in $DS_OPS; do printf 'DS_BUILD_%s=1 ' "$op"; done)
  log "DeepSpeed $DEEPSPEED_VERSION: building $want for TORCH_CUDA_ARCH_LIST=$arch (minutes)"
  # --no-build-isolation: the ops compile against the torch installed above; --no-cache-dir and
  # --force-reinstall: never reuse a wheel built earlier without the ops or for another torch.
  env $flags "$VPY" -m pip install -q --no-build-isolation --no-deps --no-cache-dir --force-reinstall \
    "deepspeed==$DEEPSPEED_VERSION"
  "$VPY" - $want <<'EOF' || die "DeepSpeed installed without its ops; see the build log above"
import sys
from deepspeed.git_version_info import installed_ops
missing = [o for o in sys.argv[1:] if not installed_ops.get(o)]
sys.exit(f"missing ops: {missing}" if missing else 0)
EOF
fi

# 3. The five packages, editable, as scripts/setup.sh installs them.
pip install -q --no-build-isolation --no-deps -e packages/ft-common -e packages/ft-prep \
  -e packages/ft-score -e packages/ft-infer -e packages/ft-train
"$VPY" -c 'import vllm, deepspeed, ray, ft_infer, ft_train; print("setup_gpu: vllm", vllm.__version__,
"| deepspeed", deepspeed.__version__, "| ray", ray.__version__)' >&2
echo "setup_gpu: done (.venv); \`just demo\` now runs the full ViGGO recipe on the GPU" >&2
