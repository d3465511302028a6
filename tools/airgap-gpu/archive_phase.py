"""Files a recipe_phase.sh result (NAME.tgz from the GPU machine) into results/bench.

    python tools/airgap-gpu/archive_phase.py NAME.tgz --phase P1 --session 2026-12-06T22:19Z --dir tta_h100_p1

Appends the phase's time_to_accuracy.json rows (with "phase" and "session") to
results/bench/time_to_accuracy.json and copies each run's manifest, metrics, train log,
summaries and xz-compressed scored completions to results/bench/DIR/PHASE-RUN.*. Spider's
verdicts are scored here (ft-score sql), as the GPU machine has no Spider databases.
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ft_common.atomic import atomic_write

ROOT = Path(__file__).resolve().parents[2]
ROWS = ROOT / "results/bench/time_to_accuracy.json"
KEEP = (".ft-train.json", ".metrics.jsonl", ".train.log", ".summary.json")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tgz")
    ap.add_argument("--phase", required=True)
    ap.add_argument("--session", required=True)
    ap.add_argument("--dir", required=True, help="folder under results/bench for the runs' files")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ft-archive-") as tmp:  # removed even when scoring fails
        new = archive(Path(tmp), a)
    for row in new:
        print(f"{row.get('name')}: acc {row.get('valid_accuracy')} steps {row.get('optimizer_steps')} "
              f"train {row.get('train_s')} s wall {row.get('wall_s')} s tokens/s {row.get('tokens_per_s_median')}",
              file=sys.stderr)
    return 0


def archive(work: Path, a: argparse.Namespace) -> list[dict]:
    """The phase's files from a.tgz unpacked in `work`, filed; returns the rows appended."""
    with tarfile.open(a.tgz) as t:
        t.extractall(work, filter="data")
    out = ROOT / "results/bench" / a.dir
    out.mkdir(parents=True, exist_ok=True)

    ft_score = shutil.which("ft-score") or str(ROOT / ".venv/bin/ft-score")
    for f in sorted(work.iterdir()):
        if not f.is_file():
            continue
        dest = out / f"{a.phase}-{f.name}"
        if f.name.endswith(".sql-valid-spider.jsonl"):
            stem = dest.name[: -len(".jsonl")]
            subprocess.run([ft_score, "sql", "-q", str(f), "-o", str(work / "spider.scored.jsonl"),
                            "--summary", str(out / f"{stem}.summary.json")], check=True)
            dest.with_name(f"{stem}.scored.jsonl.xz").write_bytes(
                lzma.compress((work / "spider.scored.jsonl").read_bytes()))
        elif f.name.endswith(".scored.jsonl"):
            dest.with_name(dest.name + ".xz").write_bytes(lzma.compress(f.read_bytes()))
        elif f.name.endswith(KEEP):
            shutil.copyfile(f, dest)
    # the rows last, in one rename: a failed scoring above leaves no row without its files
    phase_rows = work / "time_to_accuracy.json"
    new = json.loads(phase_rows.read_text()) if phase_rows.exists() else []
    for row in new:
        row["phase"], row["session"] = a.phase, a.session
    rows = json.loads(ROWS.read_text())
    with atomic_write(ROWS) as fh:
        fh.write(json.dumps(rows + new, indent=1) + "\n")
    return new


if __name__ == "__main__":
    sys.exit(main())
