"""ft-train's seconds before the first step and after the last, per launch mode.

Runs the same tiny fine-tune N times for each --launch value, alternating (so a change in the
machine's load falls on both), and reports the manifest's `timing` (driver.train's marks):
wall from the process's start to exit, start to first step, training, last step to exit.

    python bench/bench_overhead.py --runs 3                    # tiny random Llama, CPU
    python bench/bench_overhead.py --model M --device cuda     # a real model on a GPU

The tiny model is built from a config (tests/tiny_model.py); with --model, any -m ft-train takes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "train")]  # tiny_model, train_support

from bench_train import FT_TRAIN  # noqa: E402 (bench/ is the script's folder: on sys.path)
from ft_common.models import cache_root  # noqa: E402

KEYS = ("wall_s", "start_to_first_step_s", "train_s", "last_step_to_exit_s")


def viggo(data: str | None, split: str, limit: int) -> list[dict]:
    """ViGGO records: ft-prep's, staged in `data`, or made from ../shared/data."""
    if data:
        lines = (Path(data) / f"viggo-{split}.jsonl").read_text().splitlines()[:limit]
        return [json.loads(line) for line in lines]
    from train_support import viggo_records

    return viggo_records(split, limit)


def one_run(model: str, train: Path, valid: Path, out: Path, launch: str, device: str, extra: list[str]) -> dict:
    cmd = [FT_TRAIN, "-m", model, "--train", str(train), "--valid", str(valid), "-o", str(out),
           "--launch", launch, "--device", device, "-q", *extra]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"ft-train failed ({launch}):\n{proc.stderr[-2000:]}")
    timing = json.loads((out / "ft-train.json").read_text())["timing"]
    return {"wall_s": round(wall, 2), **{k: timing[k] for k in KEYS[1:]}, "phases": timing["phases"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="ft-train's -m (default: the tiny random Llama, built here)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--launch", default="local,ray", help="comma-separated --launch values to compare")
    ap.add_argument("--rows", type=int, default=200, help="ViGGO training rows (validation: a fifth)")
    ap.add_argument("--ft-args", default="--epochs 2 --batch-size 8 --ctx-len 128",
                    help="extra ft-train flags (the default: the figures in docs/benchmarks.md)")
    ap.add_argument("--data", help="a folder with viggo-train.jsonl and viggo-valid.jsonl (ft-prep's records; "
                                   "default: made from ../shared/data)")
    ap.add_argument("--token-cache", default="cold", choices=["cold", "warm"],
                    help="cold: every run tokenises (its entry in $FT_CACHE/tokens removed first, as before the "
                         "cache); warm: a first, unmeasured run fills it and every measured run finds it")
    ap.add_argument("--out", help="write the runs as JSON here")
    a = ap.parse_args()

    from train_support import write_jsonl

    work = Path(tempfile.mkdtemp(prefix="ft-bench-overhead-"))
    model = a.model
    if not model:
        from tiny_model import build_tiny_model

        model = str(build_tiny_model(work / "tiny-model"))
    train = write_jsonl(work / "train.jsonl", viggo(a.data, "train", a.rows))
    valid = write_jsonl(work / "valid.jsonl", viggo(a.data, "valid", max(1, a.rows // 5)))
    launches = a.launch.split(",")
    runs: dict[str, list[dict]] = {x: [] for x in launches}
    tokens = cache_root() / "tokens"
    before = set(tokens.iterdir()) if tokens.is_dir() else set()
    if a.token_cache == "warm":
        one_run(model, train, valid, work / "warm-up", launches[0], a.device, a.ft_args.split())
    for i in range(a.runs):
        for launch in launches:
            if a.token_cache == "cold":  # this bench's own entries only: a user's others stay
                for entry in (set(tokens.iterdir()) - before) if tokens.is_dir() else ():
                    shutil.rmtree(entry, ignore_errors=True)
            r = one_run(model, train, valid, work / f"{launch}-{i}", launch, a.device, a.ft_args.split())
            runs[launch].append(r)
            print(f"{launch:6} run {i + 1}: " + ", ".join(f"{k} {r[k]:.2f}" for k in KEYS), file=sys.stderr)
    print(f"\n| launch | {' | '.join(KEYS)} |\n|---|{'---:|' * len(KEYS)}")
    for launch, rs in runs.items():
        cells = [f"{statistics.mean(r[k] for r in rs):.2f} ({min(r[k] for r in rs):.2f}-{max(r[k] for r in rs):.2f})"
                 for k in KEYS]
        print(f"| {launch} | {' | '.join(cells)} |")
    if a.out:
        Path(a.out).write_text(json.dumps({"model": a.model or "tiny", "device": a.device, "ft_args": a.ft_args,
                                           "rows": a.rows, "token_cache": a.token_cache, "runs": runs},
                                          indent=1) + "\n")


if __name__ == "__main__":
    main()
