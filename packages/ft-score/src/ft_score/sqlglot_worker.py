"""The sqlglot executor's worker process: `python -m ft_score.sqlglot_worker IN_FD OUT_FD LIMITS_JSON`.

Started by `ft_score.sandbox.PythonExecutor`. It caps its own address space, then answers
(sql, tables, schema) messages with QueryResult fields, one query at a time; SIGALRM ends a query
past its deadline.
"""

from __future__ import annotations

import json
import signal
import sys
from multiprocessing.connection import Connection

from ft_score.sandbox import EXECUTION_ERROR, TIMEOUT, UNPARSABLE, Limits, is_statement


class _Deadline(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Deadline()


def run_query(sql: str, tables: dict, schema: dict, limits: Limits) -> tuple:
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
        except RecursionError:
            return (None, UNPARSABLE, "nested too deeply to parse")
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


def main(argv: list[str]) -> None:
    receive, send = Connection(int(argv[0]), writable=False), Connection(int(argv[1]), readable=False)
    limits = Limits(**json.loads(argv[2]))
    try:
        import resource

        limit = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C
    import sqlglot.executor  # noqa: F401  (imported once, before the first deadline starts)

    send.send("ready")
    while True:
        try:
            message = receive.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        sql, tables, schema = message
        send.send(run_query(sql, tables, schema, limits))


if __name__ == "__main__":
    main(sys.argv[1:])
