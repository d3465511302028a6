"""SQLite locked down for untrusted queries (runs inside the jailed worker, ft_score.sql.worker).

- Real databases open through the URI `file:PATH?mode=ro&immutable=1` with `PRAGMA query_only`:
  read-only, no locks, no -wal/-shm files created beside them.
- In-record tables load into a private in-memory database; names are quoted and column types
  come from ft_score.sql.sandbox.TYPE_WORDS (checked again here, whoever calls).
- Then every connection gets SQLite's own limits (`Connection.setlimit`: value and query length,
  columns, expression depth, compound SELECTs, function arguments, LIKE pattern length, bound
  variables, trigger depth, VDBE program size, no attached databases), a heap limit, temporary
  storage in memory, untrusted-schema mode, and an authorizer that allows only SELECT, reading
  columns, recursive CTEs and ordinary functions (ATTACH, DETACH, PRAGMA, every write,
  transactions and `load_extension` are denied).
- A query runs under a progress-handler deadline, a row cap and a byte budget on its result.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
import urllib.parse

from ft_score.sql.sandbox import (
    DEFAULT_LIMITS,
    DENIED,
    EXECUTION_ERROR,
    TIMEOUT,
    UNPARSABLE,
    Limits,
    QueryResult,
    check_tables,
    column_type,
)

_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                              getattr(sqlite3, "SQLITE_RECURSIVE", 33)})
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
_SYNTAX = re.compile(r"syntax error|incomplete input|unrecognized token", re.IGNORECASE)


def sqlite_limits(limits: Limits) -> dict[str, int]:
    """SQLITE_LIMIT_* values; each is far above what an honest query needs."""
    return {
        "SQLITE_LIMIT_LENGTH": limits.max_length,  # one string, blob or row
        "SQLITE_LIMIT_SQL_LENGTH": max(1000, limits.max_sql_length * 4),  # bytes of UTF-8
        "SQLITE_LIMIT_COLUMN": 1000,
        "SQLITE_LIMIT_EXPR_DEPTH": 200,
        "SQLITE_LIMIT_COMPOUND_SELECT": 64,
        "SQLITE_LIMIT_VDBE_OP": 1_000_000,
        "SQLITE_LIMIT_FUNCTION_ARG": 32,
        "SQLITE_LIMIT_ATTACHED": 0,
        "SQLITE_LIMIT_LIKE_PATTERN_LENGTH": 1000,
        "SQLITE_LIMIT_VARIABLE_NUMBER": 1,
        "SQLITE_LIMIT_TRIGGER_DEPTH": 1,
        "SQLITE_LIMIT_WORKER_THREADS": 0,
    }


def _authorizer(action: int, arg1, arg2, dbname, source) -> int:
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and arg2 and arg2.lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _lock_down(conn: sqlite3.Connection, limits: Limits) -> sqlite3.Connection:
    heap = limits.memory_mb * 1024 * 1024 // 2  # SQLite fails cleanly (out of memory) before RLIMIT_AS does
    for pragma in (f"PRAGMA hard_heap_limit = {heap}", "PRAGMA temp_store = MEMORY", "PRAGMA trusted_schema = OFF",
                   "PRAGMA cell_size_check = ON"):
        conn.execute(pragma)
    for name, value in sqlite_limits(limits).items():
        if hasattr(sqlite3, name):
            conn.setlimit(getattr(sqlite3, name), value)
    conn.set_authorizer(_authorizer)
    return conn


def open_readonly(path: str, limits: Limits = DEFAULT_LIMITS) -> sqlite3.Connection:
    """A locked-down connection to an existing SQLite file that reads it and nothing else.

    immutable=1: no locking and no journal or WAL files, so nothing is created beside the file
    (ft_score.sql.sandbox.database_path refuses a database whose write-ahead log holds changes).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    conn.execute("PRAGMA query_only = 1")  # a second lock on the file, beside mode=ro and the authorizer
    return _lock_down(conn, limits)


def quote(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def memory_db(tables: dict, limits: Limits = DEFAULT_LIMITS) -> sqlite3.Connection:
    """A private in-memory database holding in-record tables (checked first), then locked down.

    `tables` is `{table: {"columns": [[name, type], ...], "rows": [[v, ...], ...]}}`.
    """
    check_tables(tables)
    conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    conn.execute("BEGIN")  # one transaction for the whole load
    for table, spec in tables.items():
        columns = spec["columns"]
        cols = ", ".join(f"{quote(name)} {column_type(ctype)}".strip() for name, ctype in columns)
        conn.execute(f"CREATE TABLE {quote(table)} ({cols})")
        if spec.get("rows"):
            marks = ", ".join("?" * len(columns))
            conn.executemany(f"INSERT INTO {quote(table)} VALUES ({marks})", spec["rows"])
    conn.execute("COMMIT")
    return _lock_down(conn, limits)


def _size(row: tuple) -> int:
    return sum(len(v) if isinstance(v, str | bytes) else 8 for v in row)


def run_sqlite(conn: sqlite3.Connection, sql: str, limits: Limits = DEFAULT_LIMITS) -> QueryResult:
    """Run one query under the time, row and byte limits; never raises for a bad query."""
    if not sql.strip():
        return QueryResult(None, UNPARSABLE, "empty query")
    deadline = time.monotonic() + limits.timeout
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
    rows: list[tuple] = []
    size = 0
    try:
        cursor = conn.execute(sql)
        while chunk := cursor.fetchmany(256):
            rows += chunk
            size += sum(map(_size, chunk))
            if len(rows) > limits.max_rows:
                return QueryResult(None, EXECUTION_ERROR, f"more than {limits.max_rows} result rows")
            if size > limits.max_result_bytes:
                return QueryResult(None, EXECUTION_ERROR, f"a result over {limits.max_result_bytes:,} bytes")
    except MemoryError:  # SQLite's heap limit (or the worker's address space) was reached
        return QueryResult(None, EXECUTION_ERROR, f"out of memory (the sandbox allows {limits.memory_mb} MB)")
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError) as exc:
        message = str(exc) or type(exc).__name__
        if time.monotonic() > deadline and "interrupt" in message:
            return QueryResult(None, TIMEOUT, f"over {limits.timeout:g}s")
        if _SYNTAX.search(message):
            return QueryResult(None, UNPARSABLE, message)
        if "not authorized" in message or "authorization denied" in message:
            message = f"{DENIED} ({message})"
        return QueryResult(None, EXECUTION_ERROR, message)
    finally:
        conn.set_progress_handler(None, 0)
    return QueryResult(rows)
