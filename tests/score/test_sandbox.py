"""The SQL sandbox's parts: the jailed worker, SQLite's lock-down, the wire, paths and table schemas.

tests/score/test_hostile_sql.py holds the attacks end to end (code execution, bombs).
"""

import hashlib
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from ft_common.cli import run
from ft_score.cli import cli
from ft_score.sql import parse_sql, wire
from ft_score.sql.sandbox import (
    EXECUTION_ERROR,
    TIMEOUT,
    Limits,
    PythonExecutor,
    SqliteExecutor,
    check_tables,
    column_type,
    database_path,
)
from ft_score.sql.sqlite_exec import memory_db, run_sqlite

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
LIMITS = Limits(timeout=0.5, max_rows=1000)
LINUX_X86 = sys.platform == "linux" and platform.machine() == "x86_64"


def make_db(path: Path, wal: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (k INTEGER, v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(100)])
    conn.commit()
    conn.close()
    return path


def digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def sqlite_worker():
    with SqliteExecutor(LIMITS) as worker:
        yield worker


@pytest.fixture(scope="module")
def python_worker():
    with PythonExecutor(Limits(timeout=0.5)) as worker:
        yield worker


# ---------------------------------------------------------------- the worker


def test_the_worker_reports_every_confinement(sqlite_worker, python_worker):
    assert sqlite_worker.run_tables("SELECT 1", {"t": {"columns": [["k", "INTEGER"]]}}).rows == [(1,)]
    assert python_worker.run("SELECT 1 AS x", {}, {}).rows == [(1,)]
    for worker in (sqlite_worker, python_worker):
        expected = {"RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NPROC", "RLIMIT_NOFILE", "audit_hook"}
        assert {k for k, v in worker.protections.items() if v} >= expected, worker.protections
        if LINUX_X86:
            assert worker.protections["seccomp"] is True


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_on_a_real_database_change_nothing(tmp_path, sqlite_worker, query):
    db = make_db(tmp_path / "db" / "db.sqlite")
    before = digest(db.parent)
    start = time.monotonic()
    result = sqlite_worker.run_db(str(db), query.format(tmp=tmp_path))
    assert time.monotonic() - start < LIMITS.timeout + 2
    assert not result.ok and result.failure in (EXECUTION_ERROR, TIMEOUT), result
    assert sqlite_worker.run_db(str(db), "SELECT count(*) FROM t").rows == [(100,)]
    assert digest(db.parent) == before
    assert not (tmp_path / "evil.db").exists()


def test_timeouts_row_cap_and_byte_budget_are_classified(sqlite_worker):
    tables = {"t": {"columns": [["k", "INTEGER"]], "rows": [[i] for i in range(50)]}}
    assert sqlite_worker.run_tables(HOSTILE[0], tables, key=1).failure == TIMEOUT
    capped = sqlite_worker.run_tables(HOSTILE[1], tables, key=1)
    assert capped.failure == EXECUTION_ERROR and "1000 result rows" in capped.error
    assert sqlite_worker.run_tables("SELECT count(*) FROM t", tables, key=1).rows == [(50,)]
    with SqliteExecutor(Limits(timeout=1.0, max_result_bytes=10_000)) as small:
        assert len(small.run_tables("SELECT printf('%.90d', k) FROM t", tables).rows) == 50  # 4,500 bytes
        over = small.run_tables("SELECT printf('%.900d', k) FROM t", tables)  # 45,000 bytes in 50 rows
        assert over.failure == EXECUTION_ERROR and "10,000 bytes" in over.error


def test_sqlite_limits_hold_inside_the_worker(sqlite_worker):
    tables = {"t": {"columns": [["k", "INTEGER"]], "rows": [[1]]}}
    too_wide = "SELECT " + ", ".join(["k"] * 1001) + " FROM t"
    assert "too many columns" in sqlite_worker.run_tables(too_wide, tables).error
    too_deep = "SELECT " + " + ".join(["k"] * 300) + " FROM t"  # depth 300: SQLite's default allows 1000
    assert "too large" in sqlite_worker.run_tables(too_deep, tables).error  # Expression tree is too large
    too_big = sqlite_worker.run_tables("SELECT zeroblob(1000001)", tables)
    assert too_big.failure == EXECUTION_ERROR and "too big" in too_big.error
    assert sqlite_worker.run_tables("ATTACH ':memory:' AS x", tables).failure == EXECUTION_ERROR


def test_long_queries_are_refused_before_they_are_sent():
    with SqliteExecutor(Limits(timeout=1.0, max_sql_length=1000)) as worker:
        long = "SELECT 1 WHERE 1 IN (" + ", ".join(["1"] * 600) + ")"
        result = worker.run_tables(long, {"t": {"columns": [["k", "INTEGER"]]}})
        assert result.failure == EXECUTION_ERROR and "denied by the sandbox" in result.error
        assert worker.parse([long]) == [None]
        assert worker._proc is None  # nothing was ever sent: the worker never started


def test_python_executor_deadline_and_recovery(python_worker):
    with_tables = ({"t": [{"k": i} for i in range(40)]}, {"t": {"k": "BIGINT"}})
    start = time.monotonic()
    slow = python_worker.run("SELECT count(*) FROM t a, t b, t c, t d, t e", *with_tables)
    assert slow.failure == TIMEOUT and time.monotonic() - start < 4
    assert python_worker.run("SELECT count(*) FROM t", *with_tables).rows == [(40,)]
    assert python_worker.run("DROP TABLE t", *with_tables).failure == EXECUTION_ERROR
    assert python_worker.run(HOSTILE[0].replace(" t", " x"), *with_tables).failure in (EXECUTION_ERROR, TIMEOUT)


def test_a_worker_stuck_in_one_c_call_is_killed_from_outside():
    # printf with a huge width is one long C call: no progress handler and no signal handler runs
    # inside it, so only the parent's kill ends it.
    with SqliteExecutor(Limits(timeout=0.3)) as worker:
        tables = {"t": {"columns": [["k", "INTEGER"]], "rows": [[1]]}}
        start = time.monotonic()
        result = worker.run_tables("SELECT " + ", ".join(["printf('%.*c', 2147483647, 'x')"] * 3), tables)  # ~4 s each
        assert result.failure == TIMEOUT and "worker killed" in result.error
        assert time.monotonic() - start < 0.3 + worker.GRACE + 1
        assert worker.run_tables("SELECT k FROM t", tables).rows == [(1,)]  # a fresh worker, tables resent


def test_a_worker_near_its_cpu_budget_is_replaced_between_requests():
    # RLIMIT_CPU covers the worker's whole life, so a warm worker is replaced at half its budget,
    # before the kernel would kill it in the middle of a query.
    tables = {"t": {"columns": [["k", "INTEGER"]], "rows": [[1]]}}
    with SqliteExecutor(Limits(timeout=0.4, cpu_seconds=2)) as worker:
        pids, results = set(), []
        for _ in range(4):
            results.append(worker.run_tables(HOSTILE[0], tables))  # 0.4 s of CPU each
            pids.add(worker._proc.pid)
        assert len(pids) >= 2 and all(r.failure == TIMEOUT and "killed" not in r.error for r in results), results
        assert worker.run_tables("SELECT k FROM t", tables).rows == [(1,)]


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
    with PythonExecutor(Limits(timeout=1.0)) as executor:
        assert executor.run("SELECT k FROM t", *tables).rows == [(1,)]
        executor._proc.kill()  # e.g. the kernel's OOM killer
        executor._proc.wait()
        assert executor.run("SELECT k FROM t", *tables).rows == [(1,)]
    assert executor._proc is None


def test_python_executor_works_from_a_script_without_a_main_guard(tmp_path):
    # The worker is a fresh interpreter, so the caller's unguarded main module is never re-run.
    script = ("from ft_score.sql.sandbox import PythonExecutor\n"
              "e = PythonExecutor()\n"
              "print(e.run('SELECT 1 + 1 AS x', {}, {}).rows)\n"
              "e.close()\n")
    out = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[(2,)]"


def test_the_worker_is_killed_with_its_parent(tmp_path):
    script = ("import sys, time\nfrom ft_score.sql.sandbox import SqliteExecutor\n"
              "w = SqliteExecutor()\nw.parse(['SELECT 1'])\nprint(w._proc.pid, flush=True)\ntime.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the worker outlived its parent")


# ---------------------------------------------------------------- parsing in the worker, and the wire

QUERIES = ["SELECT a, COUNT(*) FROM t WHERE b LIKE 'x%' GROUP BY a ORDER BY 2 DESC LIMIT 3",
           "SELECT T1.name FROM department AS T1 JOIN management AS T2 ON T1.id = T2.id WHERE T1.x IN (SELECT y FROM u)",
           "SELECT CAST(a AS DECIMAL(10, 2)), CASE WHEN a > 1 THEN 'it''s' ELSE NULL END FROM t UNION SELECT 1, x'00'",
           "SELEC x", "((((", "SELECT 1; DROP TABLE t", "DELETE FROM t"]


def test_trees_parsed_in_the_worker_are_the_trees_parsed_here(sqlite_worker):
    trees = sqlite_worker.parse(QUERIES)
    for query, tree in zip(QUERIES, trees, strict=True):
        local = parse_sql(query)
        assert (tree is None) == (local is None), query
        if local is not None:
            assert tree == local and tree.sql() == local.sql(), query


def test_the_wire_rebuilds_only_sqlglot_expressions():
    nodes = wire.dump_tree(parse_sql("SELECT a FROM t"))
    assert wire.load_tree(nodes) == parse_sql("SELECT a FROM t")
    for bad in ([[None, None, False, "os.system", None]], [[None, None, False, "posix.system", None]],
                [[None, None, False, "builtins.eval", None]], [[None, None, False, None, "x"]], [],
                [[None, None, False, "sqlglot.serde.load", None]], "SELECT 1",
                nodes[:1] + [[5, "this", False, None, "x"]]):  # a link to a node that does not exist
        with pytest.raises(ValueError):
            wire.load_tree(bad)


def test_the_wire_carries_values_as_data():
    rows = [(1, 1.5, "é", None, True, b"\x00\xff", (1, 2))]
    assert [tuple(r) for r in wire.loads(wire.dumps({"rows": wire.encode_rows(rows)}))["rows"]] == rows
    assert wire.loads(b'{"a": {"$r": "anything"}}') == {"a": "anything"}
    with pytest.raises(ValueError):
        wire.loads(b"[" * 100_000 + b"]" * 100_000)  # too deep: an error, not a crash


# ---------------------------------------------------------------- what a record may ask for


def test_column_types_come_from_the_allowlist():
    assert column_type("varchar(255)") == "VARCHAR(255)" and column_type(None) == ""
    assert column_type("double  precision") == "DOUBLE PRECISION" and column_type("DECIMAL(10,2)") == "DECIMAL(10,2)"
    for bad in ["INT); DROP TABLE x; --", "TEXT DEFAULT (readfile('x'))", "INT PRIMARY KEY", "INT CHECK(1)",
                "EVIL", 5, ["INT"]]:
        with pytest.raises(ValueError):
            column_type(bad)


def test_table_schemas_are_checked():
    good = {"t t": {"columns": [['we"ird', "INTEGER"], ["b", None]], "rows": [[1, "x"], [None, 2.5]]}}
    check_tables(good)
    conn = memory_db(good, LIMITS)  # odd names are quoted
    assert run_sqlite(conn, 'SELECT "we""ird" FROM "t t"', LIMITS).rows == [(1,), (None,)]
    for bad in [[], {"t": {}}, {"t": {"columns": []}}, {"t": {"columns": [["a", "INT"], ["A", "INT"]]}},
                {"t": {"columns": [["a", "INT);"]]}}, {"t": {"columns": [[1, "INT"]]}},
                {"t": {"columns": [["a", "INT"]], "rows": [[1, 2]]}}, {"t": {"columns": [["a", "INT"]], "rows": [[[1]]]}},
                {"t": {"columns": [["a", "INT"]], "rows": [[2**64]]}}, {"sqlite_master": {"columns": [["a", "INT"]]}},
                {"t": {"columns": [["a\0", "INT"]]}}, {"t": {"columns": [["a", "INT"]]}, "T": {"columns": [["a", "INT"]]}}]:
        with pytest.raises(ValueError):
            check_tables(bad)


def test_database_paths_stay_under_the_folder(tmp_path):
    root = tmp_path / "dbs"
    db = make_db(root / "ok" / "ok.sqlite")
    assert database_path(str(root), "ok") == str(db.resolve())
    outside = make_db(tmp_path / "secret" / "secret.sqlite")
    (root / "link").mkdir()
    (root / "link" / "link.sqlite").symlink_to(outside)  # a link out of the folder
    (root / "inside").symlink_to(root / "ok", target_is_directory=True)
    (root / "inside" / "inside.sqlite").symlink_to(db)
    assert database_path(str(root), "inside") == str(db.resolve())  # links that stay inside are fine
    for bad in [str(outside.parent), "../secret", "..", ".", "a/b", "link", "missing", "ok\0"]:
        with pytest.raises(ValueError):
            database_path(str(root), bad)


def test_bad_database_fields_are_bad_records_naming_them(tmp_path, capsys):
    root = tmp_path / "dbs"
    make_db(root / "ok" / "ok.sqlite")
    outside = make_db(tmp_path / "secret" / "secret.sqlite")
    cases = [({"db_id": str(outside.with_suffix(""))}, "not a database name"),  # absolute: /.../secret/secret
             ({"db_id": "../secret"}, "not a database name"),
             ({"db_id": 7}, "meta.db_id is not a string (int)"),
             ({"db_id": ["ok"]}, "meta.db_id is not a string (list)"),
             ({"db_id": "ok", "db_dir": {"x": 1}}, "meta.db_dir is not a string (dict)"),
             ({"tables": {"t": {"columns": [["a", "INT); SELECT 1; --"]]}}}, "bad meta.tables")]
    for i, (fields, message) in enumerate(cases):
        meta = {"reference": "SELECT count(*) FROM t", "db_dir": str(root), **fields}
        source = tmp_path / f"in{i}.jsonl"
        source.write_text(json.dumps({"id": "r/1", "completion": "SELECT 1", "meta": meta}) + "\n")
        with pytest.raises(SystemExit) as exit_:
            run(cli, "ft-score", ["sql", "-q", str(source)])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1, (fields, err)
        assert err[0].startswith("ft-score: error: record r/1: ") and message in err[0], err


# ---------------------------------------------------------------- databases are never changed


def test_opening_a_wal_database_leaves_its_folder_as_it_was(tmp_path):
    db = make_db(tmp_path / "w" / "w.sqlite", wal=True)
    assert db.read_bytes()[18:20] == b"\x02\x02"  # WAL mode in the file header
    before = digest(db.parent)
    records = [{"id": f"w/{i}", "completion": q, "meta": {"reference": "SELECT count(*) FROM t", "db_id": "w",
                                                           "db_dir": str(tmp_path)}}
               for i, q in enumerate(["SELECT count(*) FROM t", "SELECT max(k) FROM t", "PRAGMA journal_mode=DELETE"])]
    result = CliRunner().invoke(cli, ["sql", "-q"], input="".join(json.dumps(r) + "\n" for r in records))
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["score"]["correct"] for line in result.stdout.splitlines()] == [True, False, False]
    assert digest(db.parent) == before  # no -wal or -shm beside it, the file unchanged


def test_a_database_with_changes_in_its_write_ahead_log_is_refused(tmp_path):
    db = make_db(tmp_path / "w" / "w.sqlite", wal=True)
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("INSERT INTO t VALUES (1000, 'new')")
    writer.commit()  # the row lives in w.sqlite-wal until a checkpoint
    try:
        with pytest.raises(ValueError, match="write-ahead log"):
            database_path(str(tmp_path), "w")
    finally:
        writer.close()
