"""Run untrusted SQL safely: SQLite read-only with an authorizer, or sqlglot's executor in a worker.

Generated SQL is untrusted. Every query runs under `Limits`: a wall-clock time
limit, a cap on result rows and a cap on the size of any string or blob.

SQLite (real databases, and in-record tables loaded into a private in-memory
database): files are opened read-only through the URI `mode=ro`, `PRAGMA
query_only` is set, and an authorizer allows only SELECT, reading columns,
recursive CTEs and ordinary functions; ATTACH, DETACH, PRAGMA, every write,
transactions and `load_extension` are denied. A progress handler interrupts a
query past its deadline.

sqlglot's Python executor (the case study's way to run SQL on in-record tables)
runs in a worker process with an address-space limit; SIGALRM ends a query past
its deadline inside the worker, and a worker that stops answering is killed and
replaced.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass

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
    conn.execute("PRAGMA query_only = 1")
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_length)
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.set_authorizer(_authorizer)
    return conn


def open_readonly(path: str, limits: Limits = Limits()) -> sqlite3.Connection:
    """A locked-down read-only connection to an existing SQLite file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    return _lock_down(sqlite3.connect(uri, uri=True, check_same_thread=False), limits)


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


class _Deadline(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Deadline()


def _sqlglot_query(sql: str, tables: dict, schema: dict, limits: Limits) -> tuple:
    """In the worker: parse and execute one query; returns QueryResult's fields."""
    import sqlglot
    from sqlglot.executor import execute

    if not sql.strip():
        return (None, UNPARSABLE, "empty query")
    signal.setitimer(signal.ITIMER_REAL, limits.timeout)
    try:
        try:
            expression = sqlglot.parse_one(sql, read="sqlite")
        except sqlglot.errors.ParseError as exc:
            return (None, UNPARSABLE, str(exc).splitlines()[0])
        if not isinstance(expression, sqlglot.exp.Query):
            if is_statement(expression):
                return (None, EXECUTION_ERROR, f"denied by the sandbox (not a query: {expression.key})")
            return (None, UNPARSABLE, "not a SQL statement")
        result = execute(expression, schema=schema, tables=tables)
        if len(result.rows) > limits.max_rows:
            return (None, EXECUTION_ERROR, f"more than {limits.max_rows} result rows")
        return ([tuple(row) for row in result.rows], None, None)
    except _Deadline:
        return (None, TIMEOUT, f"over {limits.timeout:g}s")
    except MemoryError:
        return (None, EXECUTION_ERROR, f"over the {limits.memory_mb} MB memory limit")
    except RecursionError:
        return (None, EXECUTION_ERROR, "query nested too deeply")
    except Exception as exc:  # the executor's own errors, unsupported features
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, _Deadline):
            return (None, TIMEOUT, f"over {limits.timeout:g}s")
        if isinstance(cause, MemoryError):
            return (None, EXECUTION_ERROR, f"over the {limits.memory_mb} MB memory limit")
        message = str(exc).strip() or type(cause).__name__
        return (None, EXECUTION_ERROR, f"{type(exc).__name__}: {message.splitlines()[0]}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _worker_main(conn, limits: Limits) -> None:
    try:
        import resource

        limit = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C
    import sqlglot.executor  # noqa: F401  (imported once, before the first deadline starts)

    conn.send("ready")
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        sql, tables, schema = message
        conn.send(_sqlglot_query(sql, tables, schema, limits))


class PythonExecutor:
    """sqlglot's Python executor in a worker process, under `Limits`.

    `run(sql, tables, schema)` takes sqlglot's shapes: tables `{name: [{col: value}, ...]}`
    and schema `{name: {col: type}}`. The worker starts on first use.
    """

    GRACE = 3.0  # seconds past the deadline before the worker is presumed stuck

    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker_main, args=(child, self.limits), daemon=True,
                                 name="ft-score-sqlglot")
        self._proc.start()
        child.close()
        self._conn = parent
        try:
            ready = parent.poll(60) and parent.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._stop(kill=True)
            raise FtError("the sqlglot executor worker did not start")

    def run(self, sql: str, tables: dict, schema: dict) -> QueryResult:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        try:
            self._conn.send((sql, tables, schema))
            if self._conn.poll(self.limits.timeout + self.GRACE):
                return QueryResult(*self._conn.recv())
        except (EOFError, OSError, BrokenPipeError):
            self._stop(kill=True)
            return QueryResult(None, EXECUTION_ERROR, "the executor worker died (memory limit?)")
        self._stop(kill=True)
        return QueryResult(None, TIMEOUT, f"over {self.limits.timeout:g}s (worker killed)")

    def _stop(self, kill: bool = False) -> None:
        if self._proc is None:
            return
        if kill:
            self._proc.kill()
        else:
            try:
                self._conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        self._proc.join(timeout=2)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=2)
        self._conn.close()
        self._proc = self._conn = None

    def close(self) -> None:
        self._stop()
