#!/usr/bin/env bash
# Source on the air-gapped GPU machine: join the bundle pieces copied to /tmp/stage by
# earlier calls (once), install the carried wheels into /tmp/site, and put a clean
# snapshot of ft (.carry/src) on PYTHONPATH with a launcher per command.
T0=$(date +%s)
# Every Python process here compiled ~2,500 modules from source again (builtins.compile: 2,518
# calls, 4.7 s of a 15 s ft-train prepare, in a first and in a repeated run alike; PREP_PROFILE=1 on
# an H100, 2026-12-06): the bytecode beside the image's packages is not used. It goes to a folder of
# our own instead, kept between the processes and calls of a warm machine, as an install's would be.
export PYTHONPYCACHEPREFIX=/tmp/pycache
# With the prefix set, a later profile still compiled ~2,900 modules in a repeated run: nothing was
# written there, as when PYTHONDONTWRITEBYTECODE is set (container images often set it).
unset PYTHONDONTWRITEBYTECODE
log() { echo "[scale $(( $(date +%s) - T0 ))s] $*" >&2; }
if [ ! -e /tmp/unstaged ]; then
cat /tmp/stage/part-* > /tmp/bundle.tar
echo "$(cat /tmp/stage/sha256)  /tmp/bundle.tar" | sha256sum -c --quiet - || { echo "bundle sha256 mismatch" >&2; exit 1; }
tar -xf /tmp/bundle.tar && rm /tmp/bundle.tar
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
tar -xJf .whl/ray-2.60.0-trimmed.tar.xz -C /tmp/site
tar -xJf .carry/data.tar.xz -C .carry
# pip's --no-compile and the untarred Ray leave no bytecode: compile it once here, as an install
# would, so the first run's timing is not spent compiling Ray, DeepSpeed and ft from source.
python3 -m compileall -q -j 0 /tmp/site > /dev/null 2>&1 || true
touch /tmp/unstaged
fi
SRC=$PWD/.carry/src
python3 -m compileall -q -j 0 "$SRC" > /dev/null 2>&1 || true  # carried anew each call
export PYTHONPATH=/tmp/site:$(ls -d "$SRC"/packages/*/src | paste -sd:)
pybin=$(dirname "$(python3 -c 'import sys; print(sys.executable)')")
mkdir -p /tmp/site/bin
for p in prep score infer train; do  # guarded: vLLM's engine core is spawned and re-imports __main__
  printf '#!%s\nfrom ft_%s.cli import main\nif __name__ == "__main__":\n    main()\n' "$pybin/python3" "$p" > "/tmp/site/bin/ft-$p"; chmod +x "/tmp/site/bin/ft-$p"
done
export PATH=/tmp/site/bin:$pybin:$PATH TORCH_CUDA_ARCH_LIST=9.0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export FT_CACHE=/tmp/ftcache PYTHONUNBUFFERED=1 RAY_DEDUP_LOGS=1
log "unstaged"
