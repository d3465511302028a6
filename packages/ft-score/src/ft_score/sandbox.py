"""Run untrusted SQL safely: SQLite read-only with an authorizer, or sqlglot's executor in a worker.

Generated SQL is untrusted. Every query runs under `Limits`: a wall-clock time
limit, a cap on result rows and a cap on the size of any string or blob.

SQLite (real databases, and in-record tables loaded into a private in-memory
database): files are opened read-only through the URI `mode=ro` with `PRAGMA
query_only` set, and an authorizer allows only SELECT, reading columns,
recursive CTEs and ordinary functions; ATTACH, DETACH, PRAGMA, every write,
transactions and `load_extension` are denied. A progress handler interrupts a
query past its deadline.

sqlglot's Python executor (the case study's way to run SQL on in-record tables)
runs in a worker process with an address-space limit; SIGALRM ends a query past
its deadline inside the worker, and a worker that stops answering is killed and
replaced.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from ft_common.errors import FtError

# Query outcome classes (besides success).
UNPARSABLE, EXECUTION_ERROR, TIMEOUT = "unparsable", "execution_error", "timeout"


@dataclass(frozen=True)
class Limits:
    timeout: float = 2.0  # seconds per query
    max_rows: int = 10_000  # result rows; more is an execution error
    max_length: int = 1_000_000  # bytes in one string or blob (SQLite)
    memory_mb: int = 1024  # address space of the Python executor's worker


@dataclass(frozen=True)
class QueryResult:
    rows: list[tuple] | None
    failure: str | None = None  # None, UNPARSABLE, EXECUTION_ERROR or TIMEOUT
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


# ---------------------------------------------------------------- SQLite

_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                              getattr(sqlite3, "SQLITE_RECURSIVE", 33)})
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
_SYNTAX = re.compile(r"syntax error|incomplete input|unrecognized token", re.IGNORECASE)


def _authorizer(action: int, arg1, arg2, dbname, source) -> int:
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and arg2 and arg2.lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _lock_down(conn: sqlite3.Connection, limits: Limits) -> sqlite3.Connection:
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_length)
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.set_authorizer(_authorizer)
    return conn


def open_readonly(path: str, limits: Limits = Limits()) -> sqlite3.Connection:
    """A locked-down read-only connection to an existing SQLite file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    conn.execute("PRAGMA query_only = 1")  # a second lock on the file, beside mode=ro and the authorizer
    return _lock_down(conn, limits)


def _quote(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def memory_db(tables: dict, limits: Limits = Limits()) -> sqlite3.Connection:
    """A private in-memory database holding in-record tables, then locked down.

    `tables` is `{table: {"columns": [[name, type], ...], "rows": [[v, ...], ...]}}`.
    """
    conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    conn.execute("BEGIN")  # one transaction for the whole load
    for table, spec in tables.items():
        columns = spec["columns"]
        cols = ", ".join(f"{_quote(name)} {ctype or ''}".strip() for name, ctype in columns)
        conn.execute(f"CREATE TABLE {_quote(table)} ({cols})")
        if spec.get("rows"):
            marks = ", ".join("?" * len(columns))
            conn.executemany(f"INSERT INTO {_quote(table)} VALUES ({marks})", spec["rows"])
    conn.execute("COMMIT")
    return _lock_down(conn, limits)


def run_sqlite(conn: sqlite3.Connection, sql: str, limits: Limits = Limits()) -> QueryResult:
    """Run one query under the time and row limits; never raises for a bad query."""
    if not sql.strip():
        return QueryResult(None, UNPARSABLE, "empty query")
    deadline = time.monotonic() + limits.timeout
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
    try:
        rows = conn.execute(sql).fetchmany(limits.max_rows + 1)
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError, MemoryError) as exc:
        message = str(exc) or type(exc).__name__
        if time.monotonic() > deadline and "interrupt" in message:
            return QueryResult(None, TIMEOUT, f"over {limits.timeout:g}s")
        if _SYNTAX.search(message):
            return QueryResult(None, UNPARSABLE, message)
        if "not authorized" in message:
            message = f"denied by the sandbox ({message})"
        return QueryResult(None, EXECUTION_ERROR, message)
    finally:
        conn.set_progress_handler(None, 0)
    if len(rows) > limits.max_rows:
        return QueryResult(None, EXECUTION_ERROR, f"more than {limits.max_rows} result rows")
    return QueryResult(rows)


# ---------------------------------------------------------------- sqlglot's Python executor


def is_statement(tree) -> bool:
    """Whether a sqlglot tree is a whole SQL statement (a query, DML, DDL or a command)."""
    from sqlglot import exp

    kinds = ("Query", "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "Command",
             "Pragma", "Attach", "Detach", "Transaction", "Commit", "Rollback", "Use", "Set")
    return isinstance(tree, tuple(getattr(exp, k) for k in kinds if hasattr(exp, k)))


class PythonExecutor:
    """sqlglot's Python executor in a worker process, under `Limits`.

    `run(sql, tables, schema)` takes sqlglot's shapes: tables `{name: [{col: value}, ...]}`
    and schema `{name: {col: type}}`. The worker (`python -m ft_score.sqlglot_worker`, a fresh
    interpreter, so the caller's main module is never re-run) starts on first use.
    """

    GRACE = 3.0  # seconds past the deadline before the worker is presumed stuck

    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        self._proc: subprocess.Popen | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None

    def _start(self) -> None:
        to_worker, from_parent = os.pipe()[::-1]  # (write end, read end)
        from_worker, to_parent = os.pipe()
        package_root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        args = [sys.executable, "-m", "ft_score.sqlglot_worker", str(from_parent), str(to_parent),
                json.dumps(dataclasses.asdict(self.limits))]
        self._proc = subprocess.Popen(args, pass_fds=(from_parent, to_parent), env=env,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        os.close(from_parent)
        os.close(to_parent)
        self._send, self._recv = Connection(to_worker, readable=False), Connection(from_worker, writable=False)
        try:
            ready = self._recv.poll(60) and self._recv.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._stop(kill=True)
            raise FtError("the sqlglot executor worker did not start")

    def run(self, sql: str, tables: dict, schema: dict) -> QueryResult:
        if self._proc is None or self._proc.poll() is not None:
            self._stop(kill=True)
            self._start()
        try:
            self._send.send((sql, tables, schema))
            if self._recv.poll(self.limits.timeout + self.GRACE):
                return QueryResult(*self._recv.recv())
        except (EOFError, OSError):
            self._stop(kill=True)
            return QueryResult(None, EXECUTION_ERROR, "the executor worker died (memory limit?)")
        self._stop(kill=True)
        return QueryResult(None, TIMEOUT, f"over {self.limits.timeout:g}s (worker killed)")

    def _stop(self, kill: bool = False) -> None:
        if self._proc is None:
            return
        if not kill:
            try:
                self._send.send(None)
                self._proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)
        for conn in (self._send, self._recv):
            conn.close()
        self._proc = self._send = self._recv = None

    def close(self) -> None:
        self._stop()
