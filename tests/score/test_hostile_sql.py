"""Hostile SQL end to end: code execution leaves no trace, every bomb ends in time and memory,
the next record is scored, and no database changes. (The whole file runs in well under a minute.)

Run alone, `python tests/score/test_hostile_sql.py DB_DIR` runs the bombs and prints one JSON
line per bomb and a last line with the memory figures: the bomb test runs it in a subprocess so
that RUSAGE_CHILDREN counts exactly the sandbox's workers.
"""

import hashlib
import json
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

TIMEOUT = 0.5
REFERENCE = "SELECT count(*) FROM t"
TABLES = {"t": {"columns": [["k", "INTEGER"], ["v", "VARCHAR"]], "rows": [[i, f'{{"a": {i}}}'] for i in range(40)]}}


def _py(marker: Path, code: str) -> str:
    """Python that creates `marker` (or runs a shell that does), as a SQL string literal's body."""
    return code.format(marker=str(marker)).replace("'", "''")


def payloads(marker: Path) -> list[tuple[str, str]]:
    """(engine, completion): each tries to create `marker`, through either engine."""
    open_it = _py(marker, "open('{marker}', 'w')")
    shell = _py(marker, "__import__('os').system('touch {marker}')")
    return [
        # sqlglot writes a JSON path's key into the Python it evaluates unescaped
        ("sqlglot", f"SELECT json_extract(v, '$.\"a'' + str({open_it}) + ''\"') FROM t"),
        ("sqlglot", f"SELECT json_extract(v, '$.\"a'' + str({shell}) + ''\"') FROM t"),
        # ... and EXTRACT's unit
        ("sqlglot", f"SELECT EXTRACT(\"year', {open_it.replace(chr(39) * 2, chr(39))})#\" FROM k) FROM t"),
        ("sqlglot", "SELECT \"k\\\" FROM t"),  # an identifier ending in a backslash
        # SQLite: files through ATTACH and VACUUM INTO, extensions
        ("sqlite", f"ATTACH DATABASE '{marker}' AS x"),
        ("sqlite", f"VACUUM INTO '{marker}'"),
        ("sqlite", f"SELECT load_extension('{marker}')"),
        ("sqlite", f"SELECT 1; ATTACH '{marker}' AS y"),
    ]


def record(i: int, completion: str, **meta) -> dict:
    return {"id": f"hostile/{i}", "completion": completion, "meta": {"reference": REFERENCE, **meta}}


def make_db(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(folder / f"{folder.name}.sqlite")
    conn.execute("CREATE TABLE t (k INTEGER, v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(40)])
    conn.commit()
    conn.close()
    return folder


def digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


# ---------------------------------------------------------------- code execution


def test_code_execution_through_either_engine_leaves_no_trace(tmp_path):
    from ft_score.sql import SqlChecker
    from ft_score.sql.sandbox import Limits

    marker = tmp_path / "pwned"
    dbs = make_db(tmp_path / "dbs" / "db").parent
    before = digest(tmp_path)
    for engine in ("sqlglot", "sqlite"):
        with SqlChecker(engine=engine, limits=Limits(timeout=TIMEOUT)) as checker:
            for i, (kind, completion) in enumerate(payloads(marker)):
                on = {"tables": TABLES} if kind == "sqlglot" or i % 2 else {"db_id": "db", "db_dir": str(dbs)}
                score = checker.score(record(i, completion, **on))
                assert score["correct"] is False and score["failure"], (engine, completion, score)
                if kind == engine:
                    assert "denied by the sandbox" in score["reason"] or "one statement" in score["reason"], score
                assert checker.score(record(99, REFERENCE, tables=TABLES))["correct"] is True
    assert not marker.exists() and digest(tmp_path) == before
    assert not Path("pwned").exists()


def test_the_payloads_are_real(tmp_path):
    """sqlglot's own executor, unguarded and unjailed (in a child), does create the files."""
    from ft_score.sql import sqlglot_tables

    data, schema = sqlglot_tables(TABLES)
    for n, (_, completion) in enumerate(p for p in payloads(tmp_path / "pwned") if p[0] == "sqlglot"):
        if n < 3:
            marker = tmp_path / "pwned"
            marker.unlink(missing_ok=True)
            script = ("import json, sys\nfrom sqlglot.executor import execute\n"
                      "try:\n    execute(sys.argv[1], schema=json.loads(sys.argv[2]), tables=json.loads(sys.argv[3]))\n"
                      "except Exception:\n    pass\n")
            subprocess.run([sys.executable, "-c", script, completion, json.dumps(schema), json.dumps(data)],
                           check=True, timeout=60)
            assert marker.exists(), completion


def test_the_python_check_alone_stops_the_payloads(tmp_path, monkeypatch):
    """With the query-shape refusal switched off, the check on generated Python still refuses (in this process)."""
    from ft_score.sql import sqlglot_exec, sqlglot_tables
    from ft_score.sql.sandbox import Limits

    monkeypatch.setattr(sqlglot_exec, "refusal", lambda tree: None)
    data, schema = sqlglot_tables(TABLES)
    marker = tmp_path / "pwned"
    for kind, completion in payloads(marker):
        if kind == "sqlglot":
            result = sqlglot_exec.run_query(completion, data, schema, Limits())
            assert result.failure == "execution_error", (completion, result)
    assert not marker.exists()
    assert sqlglot_exec.run_query("SELECT count(*) FROM t WHERE k > 3", data, schema, Limits()).rows == [(36,)]


def test_the_jail_alone_stops_the_payloads(tmp_path):
    """sqlglot's unguarded executor inside a strict jail: the injected code runs, and can do nothing."""
    from ft_score.sql import sqlglot_tables

    data, schema = sqlglot_tables(TABLES)
    marker = tmp_path / "pwned"
    script = ("import json, sys\nimport sqlglot.executor, sqlglot.dialects.sqlite\n"
              "from sqlglot.executor import execute\nfrom ft_score.sql import jail\n"
              "queries, schema, data = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])\n"
              "for q in ('SELECT json_extract(v, \\'$.a\\') FROM t', 'SELECT k FROM t WHERE k > 1'):\n"
              "    try:\n        execute(q, schema=schema, tables=data)\n"  # warm-up: honest queries, unconfined
              "    except Exception:\n        pass\n"
              "print(json.dumps(jail.confine(512, 30, True, open_files=3)), flush=True)\n"
              "for q in queries:\n    try:\n        execute(q, schema=schema, tables=data)\n"
              "    except Exception as exc:\n        print(type(exc).__name__, str(exc)[:200], flush=True)\n")
    queries = [c for kind, c in payloads(marker) if kind == "sqlglot"][:3]
    out = subprocess.run([sys.executable, "-c", script, json.dumps(queries), json.dumps(schema), json.dumps(data)],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[0])["RLIMIT_NOFILE"] is True
    assert "denied by the sandbox" in out.stdout or "Operation not permitted" in out.stdout or "Too many open files" in out.stdout
    assert not marker.exists()


# ---------------------------------------------------------------- bombs

PRINTF = "SELECT " + ", ".join(f"printf('%.*c', 2147483647, '{c}')" for c in "xyz")  # ~4 s of C each


def bombs() -> list[tuple[str, str, str]]:
    """(name, engine, completion)."""
    return [
        ("printf huge widths", "sqlite", PRINTF),
        ("zeroblob columns", "sqlite", "SELECT " + ", ".join(["zeroblob(999999)"] * 1000)),
        ("randomblob columns", "sqlite", "SELECT " + ", ".join(["randomblob(999999)"] * 400)),
        ("randomblob 2 GB", "sqlite", "SELECT randomblob(2000000000)"),
        ("endless recursive CTE", "sqlite", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"),
        ("doubling recursive CTE", "sqlite", "WITH RECURSIVE r(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM r) SELECT length(s) FROM r"),
        ("rows of blobs", "sqlite", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 5000) SELECT n, zeroblob(100000) FROM r"),
        ("cross join", "sqlite", "SELECT count(*) FROM t a, t b, t c, t d, t e, t f"),
        ("LIKE backtracking", "sqlite", "SELECT count(*) FROM t a, t b, t c WHERE a.v || b.v || c.v LIKE '%v%v%v%v%v%v%v%v%v%x'"),
        ("huge IN-list (4 MB)", "sqlite", "SELECT count(*) FROM t WHERE k IN (" + ", ".join(map(str, range(600_000))) + ")"),
        ("IN-list under the length cap", "sqlite", "SELECT count(*) FROM t WHERE k NOT IN (" + ", ".join(map(str, range(13_000))) + ")"),
        ("deep nesting", "sqlite", "SELECT " + "(" * 45_000 + "1" + ")" * 45_000),
        ("deep nesting (sqlglot)", "sqlglot", "SELECT " + "(" * 45_000 + "1" + ")" * 45_000),
        ("cross join (sqlglot)", "sqlglot", "SELECT count(*) FROM t a, t b, t c, t d, t e"),
        ("big integers (sqlglot)", "sqlglot", "SELECT POWER(10, 100000000) FROM t"),
        ("rows of strings (sqlglot)", "sqlglot", "SELECT a.v || b.v || c.v FROM t a, t b, t c"),
    ]


def run_bombs(db_dir: str) -> None:
    """Each bomb, then an honest record; one JSON line each, then the memory figures."""
    from ft_score.sql import SqlChecker
    from ft_score.sql.sandbox import Limits

    checkers = {engine: SqlChecker(engine=engine, limits=Limits(timeout=TIMEOUT)) for engine in ("sqlite", "sqlglot")}
    for checker in checkers.values():  # start the workers before measuring
        checker.score(record(0, REFERENCE, tables=TABLES))
    cases = bombs()
    own_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i, (name, engine, completion) in enumerate(cases):
        on = {"tables": TABLES} if engine == "sqlglot" else {"db_id": "db", "db_dir": db_dir}
        start = time.monotonic()
        score = checkers[engine].score(record(i, completion, **on))
        seconds = time.monotonic() - start
        honest = checkers[engine].score(record(i, REFERENCE, **on))
        print(json.dumps({"name": name, "seconds": round(seconds, 2), "failure": score.get("failure"),
                          "reason": (score.get("reason") or "")[:120], "next": honest["correct"]}), flush=True)
    for checker in checkers.values():
        checker.close()
    print(json.dumps({"workers_max_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                      "own_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - own_before) / 1024}))


def test_every_bomb_ends_in_time_and_memory_and_the_next_record_is_scored(tmp_path):
    dbs = make_db(tmp_path / "dbs" / "db").parent
    before = digest(dbs)
    start = time.monotonic()
    out = subprocess.run([sys.executable, __file__, str(dbs)], capture_output=True, text=True, timeout=170,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    results, memory = lines[:-1], lines[-1]
    assert [r["name"] for r in results] == [name for name, _, _ in bombs()]
    for r in results:
        assert r["seconds"] < TIMEOUT + 2, r
        assert r["failure"] in ("execution_error", "timeout", "unparsable", "wrong_result"), r
        assert r["next"] is True, r
    assert memory["workers_max_rss_mb"] < 512, memory
    assert memory["own_growth_mb"] < 100, memory  # results and parses stayed in the worker
    assert digest(dbs) == before
    assert time.monotonic() - start < 60


def test_a_multi_megabyte_completion_does_not_stall_ft_score():
    from ft_score.sql import SqlChecker
    from ft_score.sql.sandbox import Limits

    completion = "SELECT count(*) FROM t WHERE k IN (" + ", ".join(map(str, range(600_000))) + ")"  # 4.5 MB
    with SqlChecker(limits=Limits(timeout=TIMEOUT)) as checker:
        checker.score(record(0, REFERENCE, tables=TABLES))
        start = time.monotonic()
        score = checker.score(record(1, completion, tables=TABLES))
        assert time.monotonic() - start < 1.0
        assert score["parsed"] is False and "denied by the sandbox" in score["reason"]
    # with the length cap lifted, the parse runs in the worker and is stopped there
    with SqlChecker(limits=Limits(timeout=TIMEOUT, max_sql_length=10**8)) as checker:
        checker.score(record(0, REFERENCE, tables=TABLES))
        start = time.monotonic()
        score = checker.score(record(1, completion, tables=TABLES))
        assert time.monotonic() - start < 3 * (TIMEOUT + 1.0) + 1  # parse, reference, completion
        assert score["parsed"] is False and score["correct"] is False
        assert checker.score(record(2, REFERENCE, tables=TABLES))["correct"] is True



def test_spider_matching_never_hands_an_overlong_completion_to_sqlparse():
    # --match spider rewrites queries with sqlparse in ft-score's own process: the length cap
    # must stop a huge completion before that (3.4 s for 1 MB without it).
    from ft_score.sql import SqlChecker
    from ft_score.sql.sandbox import Limits

    completion = "SELECT count(*) FROM t WHERE k IN (" + ", ".join(map(str, range(600_000))) + ")"
    with SqlChecker(limits=Limits(timeout=TIMEOUT), match="spider") as checker:
        checker.score(record(0, REFERENCE, tables=TABLES))
        start = time.monotonic()
        score = checker.score(record(1, completion, tables=TABLES))
        assert time.monotonic() - start < 1.0
        assert score["correct"] is False and "denied by the sandbox" in score["reason"]
        assert score["ft_execution"] is False

if __name__ == "__main__":
    run_bombs(sys.argv[1])
