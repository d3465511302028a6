"""Run untrusted SQL in a jailed worker process: the parent's side of the boundary.

Every piece of work on model-written (or dataset-written) SQL happens in a worker process
(`python -m ft_score.sql.worker`), never in ft-score itself: parsing with sqlglot, SQLite queries on
real databases and on in-record tables, and sqlglot's Python executor. The worker confines
itself before it reads its first request (ft_score.sql.jail: address space, CPU seconds, no file
writes, no new processes or files, seccomp) and answers one framed JSON request at a time
(ft_score.sql.wire). This side:

- refuses a query longer than `Limits.max_sql_length` before it is sent or parsed;
- waits at most the time limit plus `GRACE` for each answer, then kills the worker (this works
  inside one long C call, where no in-process timer fires) and starts a fresh one on the next
  request; the worker is kept warm across records and replaced when half its CPU budget is used;
- pipelines requests (a record's parse and its two queries go out in one write, so the worker runs
  the queries while ft-score compares the trees);
- reads answers as bounded JSON, never as pickle;
- resolves database paths under the folder the user named (`database_path`) and checks in-record
  table schemas (`check_tables`) before anything is sent.

Two kinds of worker: `SqliteExecutor` (opens databases read-only) and `PythonExecutor` (sqlglot's
executor; strict: it can open nothing at all).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ft_common.errors import FtError

from ft_score.sql import wire

# Query outcome classes (besides success).
UNPARSABLE, EXECUTION_ERROR, TIMEOUT = "unparsable", "execution_error", "timeout"
DENIED = "denied by the sandbox"  # how every refusal's message starts


@dataclass(frozen=True)
class Limits:
    timeout: float = 2.0  # seconds per request (a query, or parsing a record's queries)
    max_rows: int = 10_000  # result rows; more is an execution error
    max_result_bytes: int = 16_000_000  # bytes in one result (text counted in characters)
    max_length: int = 1_000_000  # bytes in one string or blob (SQLite's LENGTH limit)
    max_sql_length: int = 100_000  # characters in one query; longer is refused unparsed
    memory_mb: int = 512  # the worker's address space
    cpu_seconds: int = 120  # the worker's CPU time over its life (it is replaced at half)


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class QueryResult:
    rows: list[tuple] | None
    failure: str | None = None  # None, UNPARSABLE, EXECUTION_ERROR or TIMEOUT
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


class Deadline(Exception):
    """Raised in the worker by its SIGALRM handler when a request runs past its time limit."""


def is_statement(tree) -> bool:
    """Whether a sqlglot tree is a whole SQL statement (a query, DML, DDL or a command)."""
    from sqlglot import exp

    kinds = ("Query", "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "Command",
             "Pragma", "Attach", "Detach", "Transaction", "Commit", "Rollback", "Use", "Set")
    return isinstance(tree, tuple(getattr(exp, k) for k in kinds if hasattr(exp, k)))


def precheck(sql: str, limits: Limits) -> QueryResult | None:
    """The answer for a query that need not reach the worker (empty, or too long), else None."""
    if not sql.strip():
        return QueryResult(None, UNPARSABLE, "empty query")
    if len(sql) > limits.max_sql_length:
        return QueryResult(None, EXECUTION_ERROR,
                           f"{DENIED} (a query of {len(sql):,} characters; the limit is {limits.max_sql_length:,})")
    return None


# ---------------------------------------------------------------- what a record may ask for

# Type names SQLite gives an affinity to (https://sqlite.org/datatype3.html), one or more words,
# with an optional (n) or (n, m).
TYPE_WORDS = frozenset(
    "INT INTEGER TINYINT SMALLINT MEDIUMINT BIGINT UNSIGNED BIG INT2 INT4 INT8 CHARACTER CHAR VARCHAR "
    "VARYING NCHAR NATIVE NVARCHAR TEXT CLOB STRING BLOB REAL DOUBLE PRECISION FLOAT NUMERIC DECIMAL "
    "NUMBER BOOLEAN BOOL DATE DATETIME TIMESTAMP TIME YEAR".split())
_TYPE = re.compile(r"\s*([A-Za-z][A-Za-z0-9]*(?:\s+[A-Za-z][A-Za-z0-9]*)*)\s*"
                   r"(?:\(\s*(\d{1,9})\s*(?:,\s*(\d{1,9})\s*)?\))?\s*")
_INT64 = (-(2**63), 2**63 - 1)
_VALUE_TYPES = frozenset({type(None), bool, int, float, str})  # what JSON gives and SQLite stores


def column_type(ctype) -> str:
    """A column type from meta.tables, rewritten from the allowlist ('' for none); ValueError if not one."""
    if ctype is None or ctype == "":
        return ""
    if not isinstance(ctype, str):
        raise ValueError(f"column type {str(ctype)[:60]!r} is not a string")
    return _column_type(ctype)


@functools.lru_cache(maxsize=1024)
def _column_type(ctype: str) -> str:
    match = _TYPE.fullmatch(ctype)
    words = match.group(1).upper().split() if match else []
    if not words or not set(words) <= TYPE_WORDS:
        raise ValueError(f"column type {str(ctype)[:60]!r} is not one of SQLite's type names")
    size = ",".join(n for n in match.groups()[1:] if n)
    return " ".join(words) + (f"({size})" if size else "")


def _check_name(name, what: str) -> None:
    if not isinstance(name, str) or not name or len(name) > 256 or "\0" in name:
        raise ValueError(f"{what} {str(name)[:60]!r} is not a name (a non-empty string of at most 256 characters)")


def check_tables(tables) -> None:
    """Validate meta.tables ({table: {columns: [[name, type], ...], rows: [[v, ...], ...]}});
    ValueError says what is wrong. Names are always quoted where they are used, so any string is
    a name; types must come from TYPE_WORDS; values must be SQLite's (no lists, 64-bit integers)."""
    if not isinstance(tables, dict):
        raise ValueError("meta.tables is not an object")
    seen = set()
    for table, spec in tables.items():
        _check_name(table, "table")
        if table.casefold() in seen or table.lower().startswith("sqlite_"):
            raise ValueError(f"table {table[:60]!r} is repeated or reserved")
        seen.add(table.casefold())
        if not isinstance(spec, dict) or not isinstance(spec.get("columns"), list) or not spec["columns"]:
            raise ValueError(f"table {table[:60]!r} has no columns list")
        names = set()
        for column in spec["columns"]:
            if not isinstance(column, list | tuple) or len(column) != 2:
                raise ValueError(f"table {table[:60]!r}: a column is not [name, type]")
            _check_name(column[0], "column")
            if column[0].casefold() in names:
                raise ValueError(f"table {table[:60]!r}: column {column[0][:60]!r} is repeated")
            names.add(column[0].casefold())
            column_type(column[1])
        rows = spec.get("rows")
        if rows is None:
            continue
        if not isinstance(rows, list):
            raise ValueError(f"table {table[:60]!r}: rows is not a list")
        if any(type(row) is not list or len(row) != len(names) for row in rows):
            raise ValueError(f"table {table[:60]!r}: a row is not a list of {len(names)} values")
        kinds = {type(v) for row in rows for v in row}  # values are checked by kind, then ints by range
        ints = [v for row in rows for v in row if type(v) is int] if int in kinds else ()
        if not kinds <= _VALUE_TYPES or ints and not (_INT64[0] <= min(ints) and max(ints) <= _INT64[1]):
            bad = next(v for row in rows for v in row if type(v) not in _VALUE_TYPES
                       or type(v) is int and not _INT64[0] <= v <= _INT64[1])
            raise ValueError(f"table {table[:60]!r}: value {str(bad)[:60]!r} is not a SQLite value")


def database_path(db_dir: str, db_id: str) -> str:
    """DB_DIR/DB_ID/DB_ID.sqlite, resolved and confined to DB_DIR; ValueError if it is not a database there."""
    if (not db_id or db_id in (".", "..") or any(c in db_id for c in "/\\\0")
            or os.path.isabs(db_id) or os.path.splitdrive(db_id)[0]):
        raise ValueError(f"meta.db_id {db_id[:100]!r} is not a database name (a path is not allowed)")
    try:
        root = os.path.realpath(db_dir)
        path = os.path.realpath(os.path.join(root, db_id, f"{db_id}.sqlite"))
    except (ValueError, OSError) as exc:
        raise ValueError(f"bad database folder {db_dir[:200]!r} ({exc})") from None
    if os.path.commonpath([root, path]) != root:
        raise ValueError(f"database {db_id!r} resolves outside {db_dir} (to {path}): links out of the folder are refused")
    if not os.path.isfile(path):
        raise ValueError(f"cannot open database {path} (no such file)")
    wal = path + "-wal"
    if os.path.isfile(wal) and os.path.getsize(wal) > 0:
        # Opened immutable, SQLite would not read the log and would answer from stale pages.
        raise ValueError(f"database {path} has a write-ahead log with changes in it ({wal}); "
                         f"checkpoint it first: sqlite3 {path} 'PRAGMA wal_checkpoint(TRUNCATE)'")
    return path


# ---------------------------------------------------------------- the worker, from outside


class WorkerLost(Exception):
    """The worker did not answer (killed at the deadline, or died); `result` is the record's verdict."""

    def __init__(self, result: QueryResult):
        super().__init__(result.error)
        self.result = result


class _Ticket:
    """One request in flight: its answer, once read (None while waiting; `lost` if it never ran)."""

    __slots__ = ("reply", "lost", "error")

    def __init__(self):
        self.reply: dict | None = None
        self.lost = False  # the worker was killed before it ran this one: send it again
        self.error: WorkerLost | None = None  # the worker was killed while it ran this one


class Worker:
    """One jailed worker process (`mode` "sqlite" or "sqlglot"), started on first use and kept warm.

    Requests are pipelined: `_submit` queues one and returns at once (requests go out together, in
    one write, when an answer is first awaited), `_await` reads answers in order until its own
    arrives. Each answer must come within the time limit plus GRACE of the one before it (or of
    its request, when the worker was idle); else the worker is killed, that request fails as a
    timeout and the ones queued behind it are sent again to a fresh worker.
    """

    GRACE = 1.0  # seconds past the time limit before the worker is presumed stuck and killed
    START_TIMEOUT = 60.0
    mode = ""

    def __init__(self, limits: Limits = DEFAULT_LIMITS):
        self.limits = limits
        self.protections: dict = {}  # which confinements took, as the worker reported them
        self._proc: subprocess.Popen | None = None
        self._send_fd = self._recv_fd = -1
        self._pending: collections.deque[_Ticket] = collections.deque()  # sent or not, oldest first
        self._outbox = bytearray()  # framed requests not yet written
        self._inflight = 0  # requests written and not yet answered
        self._clock = 0.0  # when the worker began on the oldest request in flight
        self._cpu = 0.0
        self._loaded = None  # the key of the tables the worker holds (after its pending requests)

    # -- life
    def _start(self) -> None:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        package_root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        args = [sys.executable, "-m", "ft_score.sql.worker", self.mode, json.dumps(dataclasses.asdict(self.limits))]
        # stderr goes to an unnamed temporary file: start-up errors land there; once confined, the
        # worker cannot write to it (RLIMIT_FSIZE=0).
        with tempfile.TemporaryFile() as errors:
            try:
                self._proc = subprocess.Popen(args, stdin=req_r, stdout=rep_w, stderr=errors, env=env,
                                              start_new_session=True)  # ^C is the parent's to handle
            finally:
                os.close(req_r)
                os.close(rep_w)
            self._send_fd, self._recv_fd = req_w, rep_r
            os.set_blocking(req_w, False)
            os.set_blocking(rep_r, False)
            try:
                ready = wire.loads(wire.recv(rep_r, 1 << 16, time.monotonic() + self.START_TIMEOUT))
            except (EOFError, OSError, ValueError, TimeoutError):
                ready = None
            if not isinstance(ready, dict) or not ready.get("ready"):
                self._stop()
                errors.seek(0)
                lines = errors.read().decode("utf-8", "replace").strip().splitlines()
                raise FtError(f"the SQL sandbox's {self.mode} worker did not start"
                              + (f": {lines[-1]}" if lines else ""))
        self.protections = ready.get("protections") or {}
        self._cpu, self._loaded = 0.0, None

    def _stop(self) -> int | None:
        """Kill the worker (it holds nothing worth a polite goodbye) and reap it; its exit status.
        Requests still queued are marked lost."""
        code = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            code = self._proc.wait()
        for fd in (self._send_fd, self._recv_fd):
            if fd >= 0:
                os.close(fd)
        for ticket in self._pending:
            ticket.lost = True
        self._pending.clear()
        self._outbox.clear()
        self._inflight = 0
        self._proc, self._send_fd, self._recv_fd, self._loaded = None, -1, -1, None
        return code

    def close(self) -> None:
        self._stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests
    def _submit(self, message: dict) -> _Ticket:
        """Queue one request (starting or replacing the worker first if needed)."""
        if not self._pending and self._proc is not None and (
                self._proc.poll() is not None or self._cpu > self.limits.cpu_seconds / 2):
            self._stop()  # dead, or near its CPU budget: replace it before it is killed mid-query
        if self._proc is None:
            self._start()
        ticket = _Ticket()
        self._pending.append(ticket)
        payload = wire.dumps(message)
        self._outbox += len(payload).to_bytes(8, "big") + payload
        if len(self._outbox) > 1 << 20:
            self._flush()
        return ticket

    def _flush(self) -> None:
        """Write the queued requests, reading answers meanwhile so that neither side blocks the other."""
        if not self._outbox:
            return
        if not self._inflight:
            self._clock = time.monotonic()
        self._inflight = len(self._pending)
        view, sent = memoryview(self._outbox), 0
        deadline = time.monotonic() + self.limits.timeout + self.GRACE
        try:
            while sent < len(view):
                if select.select([self._recv_fd], [self._send_fd], [], max(0.0, deadline - time.monotonic()))[1]:
                    try:
                        sent += os.write(self._send_fd, view[sent:])
                    except BlockingIOError:
                        pass
                elif time.monotonic() > deadline:
                    raise TimeoutError
                else:  # the worker is writing answers and not reading: read one
                    self._read_one(block=False)
        except (TimeoutError, EOFError, OSError, ValueError) as exc:
            view.release()
            self._fail(exc)
            return
        view.release()
        self._outbox.clear()

    def _read_one(self, block: bool = True) -> None:
        """Read the answer to the oldest pending request (if one is ready, when not blocking)."""
        head = self._pending[0]
        if not block and not select.select([self._recv_fd], [], [], 0)[0]:
            return
        deadline = self._clock + self.limits.timeout + self.GRACE
        reply = wire.loads(wire.recv(self._recv_fd, self.limits.max_result_bytes * 2 + (1 << 20), deadline))
        if not isinstance(reply, dict):
            raise ValueError("not an object")
        cpu = reply.get("cpu")
        self._cpu = cpu if isinstance(cpu, int | float) and math.isfinite(cpu) else math.inf
        head.reply = reply
        self._pending.popleft()
        self._inflight -= 1
        self._clock = time.monotonic()  # the worker is on the next one now

    def _fail(self, exc: Exception) -> None:
        """The oldest pending request gets the verdict; the worker is killed, the rest are lost."""
        head = self._pending.popleft() if self._pending else None
        code = self._stop()
        if isinstance(exc, TimeoutError):
            result = QueryResult(None, TIMEOUT, f"over {self.limits.timeout:g}s (worker killed)")
        else:
            why = (f"killed by {signal.Signals(-code).name}" if code and code < 0 and -code in signal.valid_signals()
                   else f"exit status {code}" if code is not None else str(exc))
            result = QueryResult(None, EXECUTION_ERROR, f"the sandbox's worker died ({why}: over a memory or CPU limit?)")
        if head is not None:
            head.error = WorkerLost(result)

    def _await(self, ticket: _Ticket) -> dict | None:
        """The ticket's answer; None if it was lost (never ran: submit it again); WorkerLost if it failed."""
        while ticket.reply is None and ticket.error is None and not ticket.lost:
            try:
                self._flush()
                if ticket.reply is None and ticket.error is None and not ticket.lost:
                    self._read_one()
            except (TimeoutError, EOFError, OSError, ValueError) as exc:
                self._fail(exc)
        if ticket.error is not None:
            raise ticket.error
        return ticket.reply

    def request(self, message: dict) -> dict:
        """Send one request and wait for its answer (sent again once if a worker died before it ran)."""
        for _ in range(2):
            reply = self._await(self._submit(message))
            if reply is not None:
                return reply
        raise WorkerLost(QueryResult(None, EXECUTION_ERROR, "the sandbox's worker was lost twice"))

    def _decode(self, reply: dict) -> QueryResult:
        if not self._pending:  # the latest answer: the worker says which tables it holds now
            self._loaded = reply.get("loaded")
        rows = reply.get("rows")
        if isinstance(rows, list) and all(isinstance(r, list) for r in rows):
            return QueryResult([tuple(r) for r in rows])
        failure = reply.get("failure")
        if failure not in (UNPARSABLE, EXECUTION_ERROR, TIMEOUT):
            failure = EXECUTION_ERROR
        return QueryResult(None, failure, str(reply.get("error") or "")[:1000])

    def _result(self, message: dict) -> QueryResult:
        try:
            return self._decode(self.request(message))
        except WorkerLost as lost:
            return lost.result

    # -- parsing
    def parse_later(self, texts: list[str | None]):
        """Start parsing now; the returned function waits for the trees (see `parse`)."""
        wanted = [i for i, t in enumerate(texts) if t is not None and precheck(t, self.limits) is None]
        message = {"op": "parse", "sql": [texts[i] for i in wanted]}
        ticket = self._submit(message) if wanted else None

        def trees() -> list:
            out: list = [None] * len(texts)
            if ticket is None:
                return out
            try:
                reply = self._await(ticket)
                if reply is None:
                    reply = self.request(message)
            except WorkerLost:
                return out
            dumped = reply.get("trees")
            if not isinstance(dumped, list) or len(dumped) != len(wanted):
                return out
            for i, nodes in zip(wanted, dumped, strict=True):
                if nodes is not None:
                    try:
                        out[i] = wire.load_tree(nodes)
                    except (ValueError, TypeError, AttributeError, KeyError):
                        out[i] = None
            return out

        return trees

    def parse(self, texts: list[str | None]) -> list:
        """sqlglot trees (ft_score.sql.checker.parse_sql in the worker) for each text; None for those that do not parse."""
        return self.parse_later(texts)()


class Runner:
    """`runner(sql) -> QueryResult` on one record's data; `start(texts)` queues queries in the worker
    now, so it runs them while ft-score does other work (parsing, comparing) and they are answered
    from there when asked for."""

    def __init__(self, worker: Worker, message: dict, tables=None, key=None):
        self.worker, self.message, self.tables, self.key = worker, message, tables, key
        self._started: dict[str, _Ticket] = {}

    def _message(self, sql: str) -> dict:
        message = {**self.message, "sql": sql}
        if self.key is None or self.key != self.worker._loaded:
            message["tables"] = self.tables  # tables travel once per key: the worker keeps the last ones
        if self.tables is not None:
            message["key"] = self.key
            self.worker._loaded = self.key  # as the worker will hold them, once it reads this
        return message

    def start(self, texts) -> None:
        for sql in dict.fromkeys(texts):
            if sql and sql not in self._started and precheck(sql, self.worker.limits) is None:
                self._started[sql] = self.worker._submit(self._message(sql))

    def __call__(self, sql: str) -> QueryResult:
        early = precheck(sql, self.worker.limits)
        if early is not None:
            return early
        ticket = self._started.pop(sql, None)
        if ticket is not None:
            try:
                reply = self.worker._await(ticket)
                if reply is not None:
                    return self.worker._decode(reply)
            except WorkerLost as lost:
                return lost.result
        return self.worker._result(self._message(sql))


class SqliteExecutor(Worker):
    """SQLite in the worker: real databases opened read-only and immutable, or in-record tables in memory."""

    mode = "sqlite"

    def runner(self, path: str | None = None, tables: dict | None = None, key=None) -> Runner:
        """A Runner on a database file (`path`, from database_path: resolved and confined) or on
        in-record tables (checked with check_tables; `key` names them: the same key, the same tables)."""
        if path is not None:
            return Runner(self, {"op": "db", "path": path})
        return Runner(self, {"op": "tables"}, tables, key)

    def run_db(self, path: str, sql: str) -> QueryResult:
        return self.runner(path=path)(sql)

    def run_tables(self, sql: str, tables: dict, key=None) -> QueryResult:
        return self.runner(tables=tables, key=key)(sql)


class PythonExecutor(Worker):
    """sqlglot's Python executor in a strict worker, guarded (ft_score.sql.sqlglot_exec).

    `run(sql, tables, schema)` takes sqlglot's shapes: tables `{name: [{col: value}, ...]}` and schema
    `{name: {col: type}}`. The worker is a fresh interpreter, so the caller's main module is never re-run.
    """

    mode = "sqlglot"

    def runner(self, tables: dict, schema: dict, key=None) -> Runner:
        return Runner(self, {"op": "sqlglot"}, {"data": tables, "schema": schema}, key)

    def run(self, sql: str, tables: dict, schema: dict, key=None) -> QueryResult:
        return self.runner(tables, schema, key)(sql)
