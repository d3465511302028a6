"""The jailed worker: `python -m ft_score.sql.worker MODE LIMITS_JSON`, started by ft_score.sql.sandbox.

MODE is "sqlite" (parse; SQLite on read-only databases and in-record tables) or "sqlglot"
(parse; sqlglot's guarded Python executor; strict: it can open no file at all). Requests come
framed on stdin and answers go framed to stdout (ft_score.sql.wire), one at a time:

    {"op": "parse", "sql": [TEXT, ...]}                      -> {"trees": [NODES or null, ...]}
    {"op": "db", "path": PATH, "sql": TEXT}                  -> {"rows": [...]} or {"failure", "error"}
    {"op": "tables", "key": K, "tables": {...}?, "sql": TEXT} -> the same (tables kept under K)
    {"op": "sqlglot", "key": K, "tables": {"data", "schema"}?, "sql": TEXT} -> the same

Every answer also carries "cpu" (seconds used so far) and "loaded" (the key of the tables held).
Order of start-up: move the pipes to fds 3 and 4 and put /dev/null on 0 and 1, import and warm
up everything (a strict worker cannot import later), confine (ft_score.sql.jail), say ready.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import OrderedDict

IN_FD, OUT_FD = 3, 4
MAX_DATABASES = 8  # open at once; the least recently used is closed first

_WARM_TABLES = {"t": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], "u": [{"a": 1}]}
_WARM_SCHEMA = {"t": {"a": "BIGINT", "b": "VARCHAR"}, "u": {"a": "BIGINT"}}
_WARM_QUERIES = [  # one of each feature, so every module they need is imported before confinement
    "SELECT a, COUNT(*) FROM t WHERE a > 1 AND b LIKE 'x%' OR a IN (1, 2) GROUP BY a HAVING COUNT(*) > 1 "
    "ORDER BY a DESC LIMIT 3",
    "SELECT DISTINCT t.a FROM t JOIN u ON t.a = u.a LEFT JOIN u AS v ON v.a = t.a WHERE NOT t.b IS NULL",
    "SELECT a FROM t WHERE a IN (SELECT a FROM u) AND EXISTS (SELECT 1 FROM u WHERE u.a = t.a) "
    "UNION SELECT a FROM u INTERSECT SELECT a FROM t EXCEPT SELECT 1",
    "SELECT MAX(a), MIN(b), AVG(a), SUM(a), CAST(a AS TEXT), CASE WHEN a > 1 THEN 'x' ELSE 'y' END, -a, a % 2, "
    "a / 2, a || b, lower(b), upper(b), length(b), abs(a), round(a, 1), substr(b, 1, 2), coalesce(a, 0), "
    "count(DISTINCT a) FROM t WHERE a BETWEEN 1 AND 3 AND a <> 2 AND b NOT LIKE 'z'",
    "WITH c AS (SELECT a FROM t) SELECT * FROM c ORDER BY 1",
    "SELECT (SELECT MAX(a) FROM u), a FROM t AS x WHERE a > (SELECT AVG(a) FROM t) ORDER BY b LIMIT 1 OFFSET 0",
]


class _State:
    def __init__(self):
        self.databases: OrderedDict = OrderedDict()  # path -> connection
        self.key = None  # key of the tables held
        self.failed: tuple | None = None  # (key, answer) when loading that key's tables failed
        self.tables = None  # an in-memory connection (sqlite) or (data, schema) (sqlglot)


def _take_pipes() -> None:
    os.dup2(0, IN_FD)
    os.dup2(1, OUT_FD)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # a stray print cannot corrupt the answers
    os.closerange(OUT_FD + 1, 1 << 16)  # devnull, and anything else inherited


def _warm_up(mode: str) -> None:
    import base64  # noqa: F401
    import datetime  # noqa: F401
    import decimal  # noqa: F401

    from ft_score.sql import wire
    from ft_score.sql.checker import parse_sql

    for sql in _WARM_QUERIES:
        wire.dump_tree(parse_sql(sql))
    if mode == "sqlite":
        from ft_score.sql import sqlite_exec  # noqa: F401
    if mode == "sqlglot":
        from ft_score.sql.sandbox import Limits
        from ft_score.sql.sqlglot_exec import run_query

        for sql in _WARM_QUERIES:
            run_query(sql, _WARM_TABLES, _WARM_SCHEMA, Limits())
        json.dumps({"x": [1.5, None, "é"]})


def _on_alarm(signum, frame):
    from ft_score.sql.sandbox import Deadline

    raise Deadline()


def _result(result) -> dict:
    from ft_score.sql import wire

    if result.ok:
        return {"rows": wire.encode_rows(result.rows)}
    return {"failure": result.failure, "error": result.error}


def handle(request: dict, state: _State, mode: str, limits) -> dict:
    """One request's answer (without "cpu" and "loaded")."""
    from ft_score.sql.sandbox import EXECUTION_ERROR, TIMEOUT

    op = request.get("op")
    sql = request.get("sql")
    if op == "parse":
        from ft_score.sql import wire
        from ft_score.sql.checker import parse_sql
        from ft_score.sql.sandbox import Deadline

        trees: list = []
        signal.setitimer(signal.ITIMER_REAL, limits.timeout)
        try:
            for text in sql:
                tree = parse_sql(text)
                trees.append(None if tree is None else wire.dump_tree(tree))
        except (Deadline, MemoryError, RecursionError):
            trees += [None] * (len(sql) - len(trees))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return {"trees": trees}
    if mode == "sqlite" and op in ("db", "tables"):
        from ft_score.sql.sqlite_exec import memory_db, open_readonly, run_sqlite

        if op == "db":
            path = request["path"]
            conn = state.databases.pop(path, None)
            if conn is None:
                while len(state.databases) >= MAX_DATABASES:
                    state.databases.popitem(last=False)[1].close()
                conn = open_readonly(path, limits)
            state.databases[path] = conn
        else:
            if "tables" in request:
                if state.tables is not None:
                    state.tables.close()
                state.key = state.tables = state.failed = None
                try:
                    state.tables = memory_db(request["tables"], limits)
                except Exception as exc:
                    state.failed = (request.get("key"), {
                        "failure": EXECUTION_ERROR, "error": f"cannot load meta.tables ({type(exc).__name__}: {exc})"})
                    return state.failed[1]
                state.key = request.get("key")
            elif state.failed and request.get("key") == state.failed[0]:
                return state.failed[1]  # a later query on the same tables, pipelined behind the load
            elif state.tables is None or request.get("key") != state.key:
                return {"failure": EXECUTION_ERROR, "error": "internal: the tables were not sent"}
            conn = state.tables
        return _result(run_sqlite(conn, sql, limits))
    if mode == "sqlglot" and op == "sqlglot":
        from ft_score.sql.sandbox import Deadline
        from ft_score.sql.sqlglot_exec import run_query

        if "tables" in request:
            state.tables, state.key = request["tables"], request.get("key")
        elif state.tables is None or request.get("key") != state.key:
            return {"failure": EXECUTION_ERROR, "error": "internal: the tables were not sent"}
        signal.setitimer(signal.ITIMER_REAL, limits.timeout)
        try:
            return _result(run_query(sql, state.tables["data"], state.tables["schema"], limits))
        except Deadline:  # the alarm fell outside run_query's own handler
            return {"failure": TIMEOUT, "error": f"over {limits.timeout:g}s"}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return {"failure": EXECUTION_ERROR, "error": f"internal: no {op!r} in a {mode} worker"}


def main(argv: list[str]) -> None:
    mode = argv[0]
    _take_pipes()
    from ft_score.sql import jail, wire
    from ft_score.sql.sandbox import EXECUTION_ERROR, Limits

    limits = Limits(**json.loads(argv[1]))
    strict = mode == "sqlglot"
    _warm_up(mode)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and kills the worker
    signal.signal(signal.SIGALRM, _on_alarm)
    protections = jail.confine(limits.memory_mb, limits.cpu_seconds, strict, open_files=OUT_FD + 1,
                               spare_files=0 if strict else MAX_DATABASES + 4)
    import resource

    state = _State()
    wire.send(OUT_FD, wire.dumps({"ready": True, "protections": protections}))
    while True:
        try:
            request = json.loads(wire.recv(IN_FD, 1 << 40))
        except (EOFError, OSError, ValueError):
            return  # the parent is gone or closed the pipe
        try:
            reply = handle(request, state, mode, limits)
        except MemoryError:
            reply = {"failure": EXECUTION_ERROR, "error": f"over the {limits.memory_mb} MB memory limit"}
        except Exception as exc:  # a bad request, an unexpected error: an answer, never a dead worker
            reply = {"failure": EXECUTION_ERROR, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        usage = resource.getrusage(resource.RUSAGE_SELF)
        reply.update(cpu=usage.ru_utime + usage.ru_stime, loaded=state.key)
        try:
            payload = wire.dumps(reply)
        except (ValueError, TypeError, OverflowError, MemoryError) as exc:
            payload = wire.dumps({"failure": EXECUTION_ERROR, "error": f"the result cannot be sent ({type(exc).__name__})",
                                  "cpu": reply["cpu"], "loaded": state.key})
        try:
            wire.send(OUT_FD, payload)
        except OSError:
            return


if __name__ == "__main__":
    main(sys.argv[1:])
