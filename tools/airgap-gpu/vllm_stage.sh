#!/usr/bin/env bash
# Stage vLLM for the offline GPU machine (Python 3.12, x86_64, torch 2.11.0+cu130,
# transformers 5.17.0 already there): the vllm wheel plus only the dependencies that
# `from vllm import LLM; LLM(...).generate(...)` imports at run time and the machine
# lacks. pydantic, pydantic-core, annotated-types, typing-inspection, jsonschema and
# friends travel with tools/airgap-gpu/gpu_stage.sh, so they are not repeated here.
#
#   bash tools/airgap-gpu/vllm_stage.sh        # -> .vllm-whl/*.whl, .carry/v0 .. .carry/vN (each <= 52 MiB)
#
# On the device, each call copies its piece to /tmp/vstage; the last one runs
# tools/airgap-gpu/vllm_unstage.sh. VLLM_WHEEL_DIR (default /tmp/vl) may already hold the
# 300 MB vllm wheel, which is then copied rather than downloaded again.
#
# Left out on purpose (imported lazily or only by other features, see issue 8):
# flashinfer-python, nvidia-cudnn-frontend, tilelang,
# nvidia-cutlass-dsl, quack-kernels, tokenspeed-mla, humming-kernels, torchcodec,
# PyNvVideoCodec, fastsafetensors, nvtx, outlines_core,
# lm-format-enforcer, lark, mistral_common, compressed-tensors, anthropic, mcp,
# model-hosting-container-standards, opentelemetry-*, prometheus-fastapi-instrumentator,
# fastapi's [standard] extras (uvicorn ...), watchfiles, ijson, python-json-logger.
set -euo pipefail
cd "$(dirname "$0")/../.."
vllm_dir=${VLLM_WHEEL_DIR:-/tmp/vl}

WHEELS=(
  vllm==0.26.0
  # imported at module level on the LLM / engine core / worker path
  cachetools==8.0.1                 # vllm.utils.cache
  cbor2==6.2.1                      # vllm.utils.hashing (prefix-cache block hashes)
  msgspec==0.22.0                   # vllm.v1.engine, vllm.v1.serial_utils, sampling/pooling params
  pyzmq==27.3.0                     # zmq: engine-core <-> LLM IPC, vllm.utils.network_utils
  pybase64==1.5.1                   # vllm.multimodal.media.*, entrypoints.pooling.*
  partial-json-parser==0.2.1.1.post7  # vllm.tool_parsers.utils (via entrypoints.chat_utils)
  openai==2.54.0                    # vllm.entrypoints.chat_utils, openai protocol types
  distro==1.9.0                     # openai
  jiter==0.19.0                     # openai
  sniffio==1.3.1                    # openai
  openai-harmony==0.0.8             # vllm.entrypoints.chat_utils, vllm.parser.harmony
  fastapi==0.136.3                  # vllm.entrypoints.pooling.* (reached from entrypoints.llm)
  starlette==1.10.0                 # fastapi, vllm.entrypoints.serve.utils.api_utils
  # vllm.v1.structured_output imports backend_guidance / backend_xgrammar at module
  # level, whose dataclass annotations (llguidance.LLMatcher, xgr.GrammarMatcher)
  # force the LazyLoader to import the real packages even without structured output
  llguidance==1.7.6                 # vllm pins >=1.7,<1.8 (wheel is manylinux_2_31)
  xgrammar==0.2.7                   # 0.2.8 needs apache-tvm-ffi>=0.1.11; vllm pins 0.1.10
  apache-tvm-ffi==0.1.10            # xgrammar (vllm pins ==0.1.10)
  # imported inside functions on the run path
  depyf==0.20.0                     # vllm.compilation.wrapper (torch.compile + CUDA graphs)
  astor==0.8.1                      # depyf
  dill==0.4.1                       # depyf
  setproctitle==1.3.8               # vllm.utils.system_utils (engine core process title)
  blake3==1.0.11                    # vllm.multimodal.hasher (small; kept to be safe)
)

plat=()
for p in manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_28_x86_64 manylinux_2_27_x86_64 \
         manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  plat+=(--platform "$p")
done

rm -rf .vllm-whl
mkdir -p .vllm-whl
if ls "$vllm_dir"/vllm-0.26.0-*.whl >/dev/null 2>&1; then
  cp "$vllm_dir"/vllm-0.26.0-*.whl .vllm-whl/
  rest=("${WHEELS[@]:1}")
else
  rest=("${WHEELS[@]}")
fi
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${plat[@]}" -d .vllm-whl "${rest[@]}"

n=$(ls .vllm-whl/*.whl | wc -l)
if [ "$n" -ne "${#WHEELS[@]}" ]; then
  echo "expected ${#WHEELS[@]} wheels in .vllm-whl, found $n" >&2
  exit 1
fi

mkdir -p .carry
tar -cf .carry/vbundle.tar .vllm-whl
bash tools/airgap-gpu/carry_split.sh .carry/vbundle.tar v
rm .carry/vbundle.tar
du -sh .vllm-whl
echo "$n wheels" >&2
