#!/usr/bin/env bash
# On the GPU machine: join the vLLM pieces that tools/airgap-gpu/vllm_stage.sh made (each
# device call copied its piece to /tmp/vstage), check them, and install the wheels
# into /tmp/vsite (no index, no dependency resolution: the machine is offline and
# already has torch 2.11.0 / transformers 5.17.0; pydantic etc. come from /tmp/site).
set -euo pipefail
stage=${VSTAGE:-/tmp/vstage}
site=${VSITE:-/tmp/vsite}
bash "$(dirname "$0")/carry_join.sh" "$stage" /tmp/vbundle.tar
rm -rf /tmp/vwhl && mkdir -p /tmp/vwhl
tar -xf /tmp/vbundle.tar -C /tmp/vwhl
rm /tmp/vbundle.tar
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$site" /tmp/vwhl/.vllm-whl/*.whl
echo "unstaged: $(ls /tmp/vwhl/.vllm-whl | wc -l) wheels into $site" >&2
echo "now: export PYTHONPATH=$site:/tmp/site:\$PYTHONPATH" >&2
