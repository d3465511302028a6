#!/usr/bin/env bash
# On the GPU machine: join the staged pieces, check them, unpack, install the wheels
# into /tmp/site (on PYTHONPATH) and the ft packages from the carried tree.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/airgap-gpu/carry_join.sh /tmp/stage /tmp/bundle.tar
tar -xf /tmp/bundle.tar
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
# The ft packages run from the carried tree: source folders on PYTHONPATH, and a
# small launcher per command (no build backend is needed on the machine).
# The launchers go beside python3 too, where scripts look for sibling commands.
pybin=$(dirname "$(python3 -c 'import sys; print(sys.executable)')")
mkdir -p /tmp/site/bin
for p in prep score infer train; do
  for dir in /tmp/site/bin "$pybin"; do
    printf '#!%s\nfrom ft_%s.cli import main\nmain()\n' "$pybin/python3" "$p" > "$dir/ft-$p"
    chmod +x "$dir/ft-$p"
  done
done
echo "unstaged: $(ls .whl | wc -l) wheels, model $(ls models)" >&2
echo "now: export PYTHONPATH=/tmp/site:$(ls -d "$PWD"/packages/*/src | paste -sd:) PATH=/tmp/site/bin:\$PATH" >&2
