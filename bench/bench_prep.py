"""ft-prep throughput: records/s per task on the local data (../shared/data).

    python bench/bench_prep.py [--data ../shared/data] [--sql-limit 2000]

Runs the library path the CLI runs (read the source rows, build records, serialise
them to JSON lines), in one process, and prints records/s by wall clock and per
CPU-second (the second is the steadier figure on a shared machine). SQL rows are
timed after their source file is loaded (the one-off load is reported on its own).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from ft_prep import gsm8k, mathqa, sql, viggo
from ft_prep.common import Stats
from ft_prep.sources import rows_for

HERE = Path(__file__).resolve().parent


def timed(make_records) -> tuple[int, float, float, Stats]:
    stats = Stats()
    wall, cpu = time.perf_counter(), time.process_time()
    n = sum(1 for r in make_records(stats) if json.dumps(r, ensure_ascii=False))
    return n, time.perf_counter() - wall, time.process_time() - cpu, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--sql-limit", type=int, default=2000)
    args = ap.parse_args()
    data, limit = args.data, args.sql_limit

    cases = {
        "viggo train (tokens)": lambda s: viggo.records(rows_for("viggo", "train", data), "train", stats=s),
        "viggo valid (fewshot)": lambda s: viggo.records(rows_for("viggo", "valid", data), "valid", "fewshot", stats=s),
        "gsm8k train (tokens)": lambda s: gsm8k.records(gsm8k.carve(rows_for("gsm8k", "train", data), "train"),
                                                        "train", stats=s),
        "gsm8k valid (chat)": lambda s: gsm8k.records(gsm8k.carve(rows_for("gsm8k", "train", data), "valid"),
                                                      "valid", "chat", stats=s),
        "mathqa valid (tokens)": lambda s: mathqa.records(rows_for("mathqa", "valid", data), "valid", stats=s),
    }
    t0 = time.perf_counter()
    list(sql.source_rows("wikisql", data, "train"))
    load = time.perf_counter() - t0
    for source in ("wikisql", "spider"):
        for mode in ("none", "synthetic"):
            opts = sql.SqlOptions(tables=mode)
            cases[f"sql {source} {limit} rows (tables {mode})"] = (
                lambda s, source=source, opts=opts: itertools.islice(sql.records(sql.source_rows(source, data, "train"),
                                                                     "train", options=opts, stats=s), limit))
    print("| case | records | wall s | records/s (wall) | records/s (CPU) | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for name, make in cases.items():
        n, wall, cpu, stats = timed(make)
        print(f"| {name} | {n} | {wall:.2f} | {n / wall:,.0f} | {n / cpu:,.0f} | {stats.summary()} |", flush=True)
    print(f"\none-off WikiSQL load (bz2 JSON, 80,654 questions): {load:.2f} s")


if __name__ == "__main__":
    main()
