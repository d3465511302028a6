"""Benchmark ft-score's checkers: records/s for viggo, gsm8k and SQL execution checks.

    python bench/bench_score.py            # library throughput (checker only, no I/O) and CLI throughput
    python bench/bench_score.py --quick    # smaller counts

Rates are given per wall-clock second and per CPU second (the latter is steadier on a shared machine).
Library: `Checker.score_records` over records in memory. CLI: `ft-score TASK -q` reading a JSONL file
and writing a JSONL file (JSON parsing and writing included). Records are synthetic but shaped like the
real ones: ViGGO MRs (from ../shared/data when present), GSM8K worked solutions ending in `#### N`, and
sql-create-context style questions over synthetic test tables (3 tables, 20 rows each).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ft_score.gsm8k import Gsm8kChecker
from ft_score.sql import SqlChecker
from ft_score.viggo import ViggoChecker

VIGGO_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "viggo" / "valid.csv"


def viggo_records(n: int, rng: random.Random) -> list[dict]:
    if VIGGO_CSV.exists():
        with open(VIGGO_CSV, newline="", encoding="utf-8") as fh:
            mrs = [row["mr"] for row in csv.DictReader(fh)]
    else:
        mrs = ["inform(name[Halo], release_year[2001], rating[good], genres[shooter], platforms[Xbox, PC])"]
    out = []
    for i in range(n):
        ref = rng.choice(mrs)
        completion = ref
        if i % 4 == 1:  # swap two attributes: wrong order
            head, _, body = ref.partition("(")
            parts = body.rstrip(")").split("], ")
            if len(parts) > 1:
                parts[0], parts[1] = parts[1], parts[0]
            completion = head + "(" + "], ".join(p.rstrip("]") for p in parts) + "])"
        elif i % 4 == 2:
            completion = ref.replace("inform(", "give_opinion(")
        out.append({"id": f"viggo/bench/{i}", "completion": completion, "finish_reason": "stop",
                    "prompt_tokens": 40, "completion_tokens": 30, "meta": {"reference": ref}})
    return out


def gsm8k_records(n: int, rng: random.Random) -> list[dict]:
    out = []
    for i in range(n):
        a, b = rng.randint(2, 500), rng.randint(2, 500)
        answer = a * b
        text = (f"Natalia sold {a} clips in April. In May she sold {b} times as many, so {a} * {b} = "
                f"<<{a}*{b}={answer}>>{answer:,} clips. She earns $1.50 per clip, so the total is "
                f"${answer * 1.5:,.2f}. Altogether she sold {answer} clips.\n#### {answer if i % 3 else answer + 1}")
        out.append({"id": f"gsm8k/bench/{i}", "completion": text, "meta": {"answer": str(answer)}})
    return out


def sql_records(n: int, rng: random.Random) -> list[dict]:
    tables = {
        "head": {"columns": [["head_id", "INTEGER"], ["name", "VARCHAR"], ["born_state", "VARCHAR"], ["age", "INTEGER"]],
                 "rows": [[i, f"name{i}", rng.choice(["California", "Texas", "Ohio"]), rng.randint(30, 80)] for i in range(20)]},
        "department": {"columns": [["department_id", "INTEGER"], ["name", "VARCHAR"], ["budget", "REAL"]],
                       "rows": [[i, f"dept{i}", rng.uniform(1, 100)] for i in range(20)]},
        "management": {"columns": [["department_id", "INTEGER"], ["head_id", "INTEGER"]],
                       "rows": [[rng.randrange(20), rng.randrange(20)] for _ in range(20)]},
    }
    pairs = [
        ("SELECT COUNT(*) FROM head WHERE age > 56", "SELECT count(*) FROM head WHERE age > 56"),
        ("SELECT name, born_state, age FROM head ORDER BY age", "SELECT name, born_state, age FROM head ORDER BY age DESC"),
        ("SELECT born_state FROM head GROUP BY born_state HAVING COUNT(*) >= 3", "SELECT born_state FROM head GROUP BY born_state HAVING count(*) >= 3"),
        ("SELECT MAX(budget), MIN(budget) FROM department", "SELECT max(budget), min(budget) FROM department"),
        ("SELECT T1.name FROM department AS T1 JOIN management AS T2 ON T1.department_id = T2.department_id",
         "SELECT name FROM department"),
        ("SELECT AVG(age) FROM head WHERE born_state = 'California'", "SELECT avg(age) FROM head WHERE born_state = 'California'"),
    ]
    out = []
    for i in range(n):
        ref, gen = pairs[i % len(pairs)]
        out.append({"id": f"sql/bench/{i}", "completion": gen, "meta": {"reference": ref, "tables": tables}})
    return out


def _report(name: str, kind: str, n: int, wall: float, cpu: float | None, note: str = "") -> None:
    cpu_rate = f"{n / cpu:10,.0f}/cpu-s" if cpu else " " * 16
    print(f"{name:32s} {kind:7s} {n:7d} records {wall:7.2f} s wall {n / wall:10,.0f} records/s  {cpu_rate} {note}",
          flush=True)


def bench_library(name: str, make_checker, records: list[dict], in_worker: bool = False) -> float:
    records = [json.loads(json.dumps(r)) for r in records]  # fresh copies
    with make_checker() as checker:
        checker.score(dict(records[0]))  # warm-up (starts the sqlglot worker)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in checker.score_records(records):
            pass
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    # in_worker: the queries run in a worker process, whose CPU time is not this process's.
    _report(name, "library", len(records), wall, None if in_worker else cpu)
    return len(records) / wall


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_cli(name: str, args: list[str], records: list[dict]) -> float:
    exe = str(Path(sys.executable).parent / "ft-score")
    # Output goes to a file, never to -o /dev/null: -o writes atomically (a temporary file renamed
    # over the target), which would replace a device node.
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        with open(source, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
        wall, cpu = time.perf_counter(), _children_cpu()
        subprocess.run([exe, *args, str(source), "-q", "-o", str(target)], check=True)
        wall, cpu = time.perf_counter() - wall, _children_cpu() - cpu
    _report(name, "CLI", len(records), wall, cpu, "(JSONL in and out, start-up included)")
    return len(records) / wall


def _has_sqlglotc() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return bool(version("sqlglotc"))
    except PackageNotFoundError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    rng = random.Random(0)
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}, sqlglotc {'installed' if _has_sqlglotc() else 'not installed'}")
    viggo, gsm8k = viggo_records(int(100_000 * scale), rng), gsm8k_records(int(100_000 * scale), rng)
    sql = sql_records(int(10_000 * scale), rng)
    bench_library("viggo", ViggoChecker, viggo)
    bench_library("gsm8k (strict + flexible)", lambda: Gsm8kChecker("strict"), gsm8k)
    bench_library("sql (sqlite, in-record tables)", lambda: SqlChecker(engine="sqlite"), sql)
    bench_library("sql (sqlglot executor)", lambda: SqlChecker(engine="sqlglot"), sql[: max(200, len(sql) // 10)],
                  in_worker=True)
    bench_cli("viggo", ["viggo"], viggo)
    bench_cli("gsm8k", ["gsm8k"], gsm8k)
    bench_cli("sql (sqlite)", ["sql"], sql)


if __name__ == "__main__":
    main()
