#!/usr/bin/env bash
# On the GPU machine: join the staged pieces, check them, unpack, install the wheels
# into /tmp/site (on PYTHONPATH) and the ft packages from the carried tree.
set -euo pipefail
cd "$(dirname "$0")/.."
cat /tmp/stage/part-* > /tmp/bundle.tar
echo "$(cat /tmp/stage/bundle.sha256)  /tmp/bundle.tar" | sha256sum -c --quiet -
tar -xf /tmp/bundle.tar
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
# The ft packages run from the carried tree: source folders on PYTHONPATH, and a
# small launcher per command (no build backend is needed on the machine).
mkdir -p /tmp/site/bin
for p in prep score infer train; do
  printf '#!/usr/bin/env python3\nfrom ft_%s.cli import main\nmain()\n' "$p" > "/tmp/site/bin/ft-$p"
  chmod +x "/tmp/site/bin/ft-$p"
done
echo "unstaged: $(ls .whl | wc -l) wheels, model $(ls models)" >&2
echo "now: export PYTHONPATH=/tmp/site:$(ls -d "$PWD"/packages/*/src | paste -sd:) PATH=/tmp/site/bin:\$PATH" >&2
