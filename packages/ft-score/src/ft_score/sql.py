"""SQL checker: execution accuracy in the sandbox, beside exact match and AST equivalence.

The generated and the reference query run on the same data: the real SQLite
database when the record names one (meta.db_id under meta.db_dir), else the
record's synthetic tables (meta.tables), loaded into a private in-memory SQLite
database (`engine="sqlite"`, the default) or run by sqlglot's Python executor
(`engine="sqlglot"`, as the case study did). Results compare as multisets
(order-insensitive) unless the reference has a top-level ORDER BY, with a
numeric tolerance for floats. Records with neither tables nor a database are
judged by AST equivalence (`checked_by: "ast"`).
"""

from __future__ import annotations

import math
import os
import re
import sqlite3

import sqlglot
from ft_common.errors import InputError
from ft_common.records import record_id
from ft_common.tasks.sql import extract_sql
from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from ft_score.base import Checker, meta_of, reference_of
from ft_score.sandbox import (
    UNPARSABLE,
    Limits,
    PythonExecutor,
    QueryResult,
    is_statement,
    memory_db,
    open_readonly,
    run_sqlite,
)

ENGINES = ("sqlite", "sqlglot")
_SQLITE = sqlglot.Dialect.get_or_raise("sqlite")
_SPACE = re.compile(r"\s+")
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


def normalize_sql(sql: str) -> str:
    """Whitespace collapsed, trailing semicolons dropped: the text exact match compares."""
    return _SPACE.sub(" ", sql).strip().rstrip(";").strip()


def parse_sql(sql: str) -> exp.Expr | None:
    """sqlglot's tree of exactly one SQLite statement, or None."""
    try:
        trees = [tree for tree in _SQLITE.parse(sql) if tree is not None]
    except (sqlglot.errors.SqlglotError, RecursionError, ValueError):
        return None
    if len(trees) != 1 or not is_statement(trees[0]):  # "SELEC x" parses as an alias
        return None
    return trees[0]


def ast_equivalent(a: exp.Expr, b: exp.Expr) -> bool:
    """Whether two trees are the same query up to the case of unquoted identifiers (normalises both in place)."""
    return normalize_identifiers(a, dialect="sqlite") == normalize_identifiers(b, dialect="sqlite")


def is_ordered(sql: str, tree: exp.Expr | None) -> bool:
    """Whether the query's result order is part of its meaning (a top-level ORDER BY)."""
    if tree is None:
        return bool(_ORDER_BY.search(sql))
    return isinstance(tree, exp.Query) and bool(tree.args.get("order"))


# ---------------------------------------------------------------- comparing results


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def values_equal(a, b, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    if a == b:
        return True
    if _is_number(a) and isinstance(b, str) or _is_number(b) and isinstance(a, str):
        try:
            a, b = float(a), float(b)
        except ValueError:
            return False
    if _is_number(a) and _is_number(b):
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)
    return False


def _sort_key(row: tuple) -> tuple:
    key = []
    for v in row:
        if v is None:
            key.append((0, 0.0, ""))
        elif _is_number(v):
            key.append((1, round(float(v), 6), ""))
        else:
            key.append((2, 0.0, str(v)))
    return tuple(key)


def results_match(got: list[tuple], want: list[tuple], ordered: bool = False) -> bool:
    """Same rows (as a multiset, or as a sequence when `ordered`), floats within tolerance."""
    if len(got) != len(want):
        return False
    if not ordered:
        got, want = sorted(got, key=_sort_key), sorted(want, key=_sort_key)
    for a, b in zip(got, want, strict=True):
        if len(a) != len(b) or not all(values_equal(x, y) for x, y in zip(a, b, strict=True)):
            return False
    return True


# ---------------------------------------------------------------- the checker


def _lower_tables(tables: dict) -> dict:
    return {name: {**spec, "rows": [[v.lower() if isinstance(v, str) else v for v in row]
                                    for row in spec.get("rows") or []]}
            for name, spec in tables.items()}


def _sqlglot_type(ctype: str | None) -> str:
    t = (ctype or "").upper()
    if "INT" in t:
        return "BIGINT"
    if any(k in t for k in ("REAL", "FLOA", "DOUB", "NUM", "DEC")):
        return "DOUBLE"
    return "VARCHAR"


def sqlglot_tables(tables: dict) -> tuple[dict, dict]:
    """meta.tables in sqlglot's executor shapes: ({name: [{col: v}]}, {name: {col: type}})."""
    data, schema = {}, {}
    for table, spec in tables.items():
        cols = [str(name).lower() for name, _ in spec["columns"]]
        schema[str(table).lower()] = {c: _sqlglot_type(t) for c, (_, t) in zip(cols, spec["columns"], strict=True)}
        data[str(table).lower()] = [dict(zip(cols, row, strict=False)) for row in spec.get("rows") or []]
    return data, schema


class SqlChecker(Checker):
    task = "sql"
    metrics = ("execution", "exact", "ast_equal", "parsed")

    def __init__(self, lowercase: bool = False, engine: str = "sqlite", limits: Limits | None = None,
                 db_dir: str | None = None):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}")
        self.lowercase, self.engine, self.db_dir = lowercase, engine, db_dir
        self.limits = limits or Limits()
        self._python: PythonExecutor | None = None
        self._dbs: dict[str, sqlite3.Connection] = {}

    # -- where the queries run
    def _database(self, record: dict, meta: dict) -> sqlite3.Connection | None:
        db_id = meta.get("db_id")
        if not db_id:
            return None
        db_dir = self.db_dir or meta.get("db_dir")
        if not db_dir:
            raise InputError(f"record {record_id(record)}: meta.db_id without meta.db_dir (or --db-dir)")
        path = os.path.join(db_dir, db_id, f"{db_id}.sqlite")
        if path not in self._dbs:
            try:
                self._dbs[path] = open_readonly(path, self.limits)
            except (FileNotFoundError, sqlite3.Error) as exc:
                raise InputError(f"record {record_id(record)}: cannot open database {path} ({exc})") from None
        return self._dbs[path]

    def _runner(self, record: dict, meta: dict):
        """A function sql -> QueryResult on the record's data, and where it runs; (None, None) if none."""
        conn = self._database(record, meta)
        if conn is not None:
            return (lambda sql: run_sqlite(conn, sql, self.limits)), "database"
        tables = meta.get("tables")
        if not tables:
            return None, None
        if not isinstance(tables, dict):
            raise InputError(f"record {record_id(record)}: meta.tables is not an object")
        if self.lowercase:
            tables = _lower_tables(tables)
        try:
            if self.engine == "sqlglot":
                data, schema = sqlglot_tables(tables)
                python = self._python or PythonExecutor(self.limits)
                self._python = python
                return (lambda sql: python.run(sql, data, schema)), "tables"
            conn = memory_db(tables, self.limits)
        except (KeyError, TypeError, ValueError, sqlite3.Error) as exc:
            raise InputError(f"record {record_id(record)}: bad meta.tables ({type(exc).__name__}: {exc})") from None
        return (lambda sql: run_sqlite(conn, sql, self.limits)), "tables"

    def check(self, record: dict, completion: str) -> dict:
        meta = meta_of(record)
        raw_reference = reference_of(record)
        raw_generated = extract_sql(completion)
        generated, reference = raw_generated, raw_reference.strip().rstrip(";")
        if self.lowercase:
            generated, reference = generated.lower(), reference.lower()
        exact = normalize_sql(generated) == normalize_sql(reference)
        ref_tree = parse_sql(reference)
        gen_tree = ref_tree if exact else parse_sql(generated)  # same text, same tree
        score: dict = {
            "correct": False,
            "sql": raw_generated[:1000],  # the extracted query (capped: the completion holds it all)
            "exact": exact,
            "ast_equal": None if ref_tree is None else (
                exact or (gen_tree is not None and ast_equivalent(gen_tree, ref_tree))),
            "parsed": gen_tree is not None,
            "execution": None,
        }
        run, where = self._runner(record, meta)
        if run is None:
            score["checked_by"] = "ast"
            score["correct"] = bool(score["ast_equal"] or score["exact"])
            if not score["correct"]:
                score.update(failure=UNPARSABLE if gen_tree is None else "wrong_ast",
                             reason="no tables or database to run on; compared ASTs")
            return score
        score["checked_by"] = where
        if where == "database":  # real rows cannot be lower-cased, so queries run as written there
            generated, reference = raw_generated, raw_reference
        want = run(reference)
        if not want.ok:
            score.update(failure="bad_reference", reason=f"reference {want.failure}: {want.error}")
            return score
        got = run(generated) if generated else QueryResult(None, UNPARSABLE, "no SQL in the completion")
        if not got.ok:
            score.update(execution=False, failure=got.failure, reason=(got.error or "")[:300])
            return score
        match = results_match(got.rows, want.rows, ordered=is_ordered(reference, ref_tree))
        score.update(execution=match, correct=match)
        if not match:
            score.update(failure="wrong_result", reason=f"{len(got.rows)} rows, reference has {len(want.rows)}")
        return score

    def close(self) -> None:
        if self._python is not None:
            self._python.close()
            self._python = None
        for conn in self._dbs.values():
            conn.close()
        self._dbs.clear()
