# Source on the GPU machine after tools/airgap-gpu/gpu_unstage.sh (and tools/airgap-gpu/vllm_unstage.sh):
# the carried packages and the ft source folders on PYTHONPATH, offline, one cache.
export PYTHONPATH=/tmp/vsite:/tmp/site:$(ls -d "$PWD"/packages/*/src | paste -sd:)
export PATH=/tmp/site/bin:$PATH
export TORCH_CUDA_ARCH_LIST=9.0   # the image's 9.0a breaks DeepSpeed's op builds
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1
export FT_CACHE=/tmp/ftcache PYTHONUNBUFFERED=1 RAY_DEDUP_LOGS=1
