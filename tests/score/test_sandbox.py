"""The SQL sandbox under hostile queries: nothing changes on disk, every record gets a score."""

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ft_score.sandbox import (
    EXECUTION_ERROR,
    TIMEOUT,
    Limits,
    PythonExecutor,
    memory_db,
    open_readonly,
    run_sqlite,
)

HOSTILE = [
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",  # endless
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r",  # endless rows
    "SELECT count(*) FROM t a, t b, t c, t d, t e, t f, t g",  # huge cross join
    "DELETE FROM t",
    "DROP TABLE t",
    "UPDATE t SET v = 0",
    "INSERT INTO t VALUES (99, 'x')",
    "CREATE TABLE evil (x)",
    "ATTACH DATABASE '{tmp}/evil.db' AS evil",
    "PRAGMA journal_mode = WAL",
    "PRAGMA user_version = 7",
    "VACUUM",
    "SELECT load_extension('/tmp/evil.so')",
    "SELECT 1; DROP TABLE t",
    "BEGIN; DELETE FROM t; COMMIT",
    "SELECT zeroblob(2000000000)",
    "SELECT randomblob(100000000)",
    "REPLACE INTO t VALUES (1, 'y')",
]


def make_db(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (k INTEGER, v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(100)])
    conn.commit()
    conn.close()
    return path


def digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


LIMITS = Limits(timeout=0.5, max_rows=1000)


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_on_a_real_database_change_nothing(tmp_path, query):
    db = make_db(tmp_path / "db" / "db.sqlite")
    before = digest(db.parent)
    conn = open_readonly(str(db), LIMITS)
    start = time.monotonic()
    result = run_sqlite(conn, query.format(tmp=tmp_path), LIMITS)
    assert time.monotonic() - start < 3
    assert not result.ok and result.failure in (EXECUTION_ERROR, TIMEOUT), result
    assert run_sqlite(conn, "SELECT count(*) FROM t", LIMITS).rows == [(100,)]
    conn.close()
    assert digest(db.parent) == before
    assert not (tmp_path / "evil.db").exists()


def test_timeouts_and_row_cap_are_classified():
    conn = memory_db({"t": {"columns": [["k", "INTEGER"]], "rows": [[i] for i in range(50)]}}, LIMITS)
    assert run_sqlite(conn, HOSTILE[0], LIMITS).failure == TIMEOUT
    capped = run_sqlite(conn, HOSTILE[1], LIMITS)
    assert capped.failure == EXECUTION_ERROR and "1000 result rows" in capped.error
    assert run_sqlite(conn, "SELECT count(*) FROM t", LIMITS).rows == [(50,)]


def test_python_executor_deadline_and_recovery():
    with_tables = ({"t": [{"k": i} for i in range(40)]}, {"t": {"k": "BIGINT"}})
    executor = PythonExecutor(Limits(timeout=0.5))
    try:
        start = time.monotonic()
        slow = executor.run("SELECT count(*) FROM t a, t b, t c, t d, t e", *with_tables)
        assert slow.failure == TIMEOUT and time.monotonic() - start < 4
        assert executor.run("SELECT count(*) FROM t", *with_tables).rows == [(40,)]
        assert executor.run("DROP TABLE t", *with_tables).failure == EXECUTION_ERROR
        assert executor.run(HOSTILE[0].replace(" t", " x"), *with_tables).failure in (EXECUTION_ERROR, TIMEOUT)
    finally:
        executor.close()


def test_every_hostile_record_gets_a_score_through_the_cli(tmp_path):
    db = make_db(tmp_path / "db" / "db.sqlite")
    before = digest(db.parent)
    records = [{"id": f"h/{i}", "completion": q.format(tmp=tmp_path),
                "meta": {"reference": "SELECT count(*) FROM t", "db_id": "db", "db_dir": str(tmp_path)}}
               for i, q in enumerate(HOSTILE)]
    out = subprocess.run([str(Path(sys.executable).parent / "ft-score"), "sql", "--timeout", "0.5", "-q"],
                         input="".join(json.dumps(r) + "\n" for r in records), capture_output=True, text=True,
                         timeout=120, env={**os.environ})
    assert out.returncode == 0, out.stderr
    scored = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["id"] for r in scored] == [r["id"] for r in records]
    assert all(r["score"]["correct"] is False and r["score"]["failure"] for r in scored)
    assert digest(db.parent) == before


def test_python_executor_replaces_a_dead_worker():
    tables = ({"t": [{"k": 1}]}, {"t": {"k": "BIGINT"}})
    executor = PythonExecutor(Limits(timeout=1.0))
    try:
        assert executor.run("SELECT k FROM t", *tables).rows == [(1,)]
        executor._proc.kill()  # e.g. the kernel's OOM killer
        executor._proc.wait()
        assert executor.run("SELECT k FROM t", *tables).rows == [(1,)]
    finally:
        executor.close()
    assert executor._proc is None


def test_python_executor_works_from_a_script_without_a_main_guard(tmp_path):
    # The worker is a fresh interpreter, so the caller's unguarded main module is never re-run.
    script = ("from ft_score.sandbox import PythonExecutor\n"
              "e = PythonExecutor()\n"
              "print(e.run('SELECT 1 + 1 AS x', {}, {}).rows)\n"
              "e.close()\n")
    out = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[(2,)]"
