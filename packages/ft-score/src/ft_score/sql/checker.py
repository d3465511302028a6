"""SQL checker: execution accuracy in the sandbox, beside exact match and AST equivalence.

The generated and the reference query run on the same data: the real SQLite
database when the record names one (meta.db_id under meta.db_dir), else the
record's synthetic tables (meta.tables), loaded into a private in-memory SQLite
database (`engine="sqlite"`, the default) or run by sqlglot's Python executor
(`engine="sqlglot"`, as the case study did). Results compare by ft's rule
(`match="ft"`: rows as multisets unless the reference has a top-level ORDER BY,
columns in any order, floats within a tolerance; ft_score.sql.match) or by
test-suite-sql-eval's (`match="spider"`). Records with neither tables nor a
database are judged by AST equivalence (`checked_by: "ast"`).
"""

from __future__ import annotations

import re

import sqlglot
from ft_common.errors import InputError
from ft_common.records import record_id
from ft_common.tasks.sql import extract_sql
from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from ft_score.base import Checker, meta_of, reference_of
from ft_score.sql.match import (  # noqa: F401 (results_match, values_equal lived here: still importable)
    match_results,
    results_match,
    spider_prepare,
    spider_result_eq,
    values_equal,
)
from ft_score.sql.sandbox import (
    UNPARSABLE,
    Limits,
    PythonExecutor,
    QueryResult,
    SqliteExecutor,
    check_tables,
    database_path,
    is_statement,
    precheck,
)

ENGINES = ("sqlite", "sqlglot")
MATCHES = ("ft", "spider")  # ft's result comparison, or test-suite-sql-eval's
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


def output_names(tree: exp.Expr | None) -> list[str | None] | None:
    """A query's output column names: a plain column's or an alias; None for other expressions."""
    if not isinstance(tree, exp.Query):
        return None
    names: list[str | None] = []
    for e in tree.selects:
        if isinstance(e, exp.Alias):
            names.append(e.alias or None)
        elif isinstance(e, exp.Column) and not isinstance(e.this, exp.Star):
            names.append(e.name)
        else:
            names.append(None)
    return names


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


def _execute(run, generated: str, reference: str, same) -> dict:
    """Run both queries and compare their rows with `same(got, want) -> (bool, details)`: score fields."""
    want = run(reference)
    if not want.ok:
        return {"failure": "bad_reference", "reason": f"reference {want.failure}: {want.error}"}
    got = run(generated) if generated else QueryResult(None, UNPARSABLE, "no SQL in the completion")
    if not got.ok:
        return {"execution": False, "failure": got.failure, "reason": (got.error or "")[:300]}
    match, details = same(got.rows, want.rows)
    out = {"execution": match, "correct": match, **details}
    if not match:
        out.update(failure="wrong_result", reason=f"{len(got.rows)} rows, reference has {len(want.rows)}")
    return out


def _memo(run):
    results: dict[str, QueryResult] = {}

    def once(sql: str) -> QueryResult:
        if sql not in results:
            results[sql] = run(sql)
        return results[sql]

    return once


class SqlChecker(Checker):
    task = "sql"
    metrics = ("execution", "exact", "ast_equal", "parsed")

    def __init__(self, lowercase: bool = False, engine: str = "sqlite", limits: Limits | None = None,
                 db_dir: str | None = None, match: str = "ft"):
        """`match`: "ft" (ft's rule) or "spider" (test-suite-sql-eval's; ft's verdict kept as ft_execution)."""
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}")
        if match not in MATCHES:
            raise ValueError(f"match must be one of {MATCHES}")
        self.lowercase, self.engine, self.db_dir, self.match = lowercase, engine, db_dir, match
        if match == "spider":
            self.metrics = ("execution", "ft_execution", "exact", "ast_equal", "parsed")
        self.limits = limits or Limits()
        self._python: PythonExecutor | None = None
        self._sqlite: SqliteExecutor | None = None  # parses every query, and runs all but sqlglot's
        self._paths: dict[tuple[str, str], str] = {}
        self._records = 0  # names each record's tables, so the worker is sent them once
        self._current: tuple | None = None  # (record, its runner and where): _runner is asked twice

    def _sandbox(self) -> SqliteExecutor:
        if self._sqlite is None:
            self._sqlite = SqliteExecutor(self.limits)
        return self._sqlite

    # -- where the queries run
    def _database(self, record: dict, meta: dict) -> str | None:
        """The record's database file, confined under the database folder (sandbox.database_path)."""
        db_id = meta.get("db_id")
        if db_id is None or db_id == "":
            return None
        db_dir = self.db_dir or meta.get("db_dir")
        if not db_dir:
            raise InputError(f"record {record_id(record)}: meta.db_id without meta.db_dir (or --db-dir)")
        for key, value in (("db_id", db_id), ("db_dir", db_dir)):
            if not isinstance(value, str):
                raise InputError(f"record {record_id(record)}: meta.{key} is not a string ({type(value).__name__})")
        if (db_dir, db_id) not in self._paths:
            try:
                self._paths[db_dir, db_id] = database_path(db_dir, db_id)
            except ValueError as exc:
                raise InputError(f"record {record_id(record)}: {exc}") from None
        return self._paths[db_dir, db_id]

    def _runner(self, record: dict, meta: dict):
        """A function sql -> QueryResult on the record's data (a sandbox.Runner), and where it runs;
        (None, None) if none."""
        if self._current is None or self._current[0] is not record:
            self._current = (record, self._new_runner(record, meta))
        return self._current[1]

    def _new_runner(self, record: dict, meta: dict):
        path = self._database(record, meta)
        if path is not None:
            return self._sandbox().runner(path=path), "database"
        tables = meta.get("tables")
        if not tables:
            return None, None
        try:
            check_tables(tables)  # before anything runs: a bad schema is a bad record
        except ValueError as exc:
            raise InputError(f"record {record_id(record)}: bad meta.tables ({exc})") from None
        if self.lowercase:
            tables = _lower_tables(tables)
        self._records += 1
        key = self._records
        if self.engine == "sqlglot":
            data, schema = sqlglot_tables(tables)
            self._python = self._python or PythonExecutor(self.limits)
            return self._python.runner(data, schema, key), "tables"
        return self._sandbox().runner(tables=tables, key=key), "tables"

    def _parse(self, record: dict, meta: dict, queries: tuple[str, str], raw: tuple[str, str], exact: bool):
        """(reference tree, generated tree), parsed in the jailed worker (so a multi-MB or pathological
        completion cannot stall ft-score), while the worker already runs both queries on the record's data."""
        reference, generated = queries
        trees = self._sandbox().parse_later([reference, None if exact else generated])
        run, where = self._runner(record, meta)
        if run is not None:
            run.start(raw if where == "database" else queries)  # the texts check() runs there
        ref_tree, gen_tree = trees()
        return ref_tree, ref_tree if exact else gen_tree  # same text, same tree

    def check(self, record: dict, completion: str) -> dict:
        meta = meta_of(record)
        raw_reference = reference_of(record)
        raw_generated = extract_sql(completion)
        generated, reference = raw_generated, raw_reference.strip().rstrip(";")
        if self.lowercase:
            generated, reference = generated.lower(), reference.lower()
        exact = normalize_sql(generated) == normalize_sql(reference)
        ref_tree, gen_tree = self._parse(record, meta, (reference, generated), (raw_reference, raw_generated), exact)
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

        def ft_same(got: list, want: list) -> tuple[bool, dict]:
            perm = match_results(got, want, ordered=is_ordered(reference, ref_tree),
                                 got_names=output_names(gen_tree), want_names=output_names(ref_tree))
            reordered = perm is not None and perm != tuple(range(len(perm)))
            return perm is not None, ({"columns_reordered": True} if reordered else {})

        if self.match == "spider":
            run = _memo(run)  # the rewritten queries are often the same text
        verdict = _execute(run, generated, reference, ft_same)
        if self.match == "spider" and precheck(generated, self.limits) is not None:
            verdict = {**verdict, "ft_execution": verdict.get("execution")}  # too long for sqlparse too
        elif self.match == "spider":
            pred, gold, order_matters = spider_prepare(generated, reference)
            spider = _execute(run, pred, gold, lambda got, want: (spider_result_eq(want, got, order_matters), {}))
            verdict = {**spider, "ft_execution": verdict.get("execution")}
        score.update(verdict)
        return score

    def close(self) -> None:
        for worker in (self._python, self._sqlite):
            if worker is not None:
                worker.close()
        self._python = self._sqlite = self._current = None


def command():
    """`ft-score sql`, found by ft_score.cli through the task registry."""
    import click

    from ft_score.command import score_stream, task_command

    @task_command("sql")
    @click.option("--lowercase", is_flag=True,
                  help="Lower-case both queries (and in-record table values) first, as the case study did.")
    @click.option("--engine", type=click.Choice(ENGINES), default="sqlite", show_default=True,
                  help="Run in-record tables in SQLite (in memory) or sqlglot's Python executor.")
    @click.option("--timeout", type=click.FloatRange(min=0.01), default=2.0, show_default=True,
                  help="Seconds per query.")
    @click.option("--max-rows", type=click.IntRange(min=1), default=10_000, show_default=True,
                  help="Result rows per query; more is an execution error.")
    @click.option("--db-dir", type=click.Path(file_okay=False), default=None,
                  help="Folder of DB_ID/DB_ID.sqlite databases (overrides meta.db_dir).")
    @click.option("--match", "match", type=click.Choice(MATCHES), default="ft", show_default=True,
                  help="How result sets compare. ft: rows as a multiset (a sequence under a top-level "
                       "ORDER BY), columns in any order but paired by name when both queries name them, "
                       "numbers within 1e-6, DISTINCT kept. spider: test-suite-sql-eval's execution match "
                       "(DISTINCT removed, exact values, any column order, row order if the reference "
                       "says 'order by' anywhere); ft's verdict is kept as ft_execution. Needs ft-score[spider].")
    def sql(input, output, summary_path, limit, quiet, lowercase, engine, timeout, max_rows, db_dir, match):
        """Score SQL by executing it in a sandbox, plus exact match and AST equivalence.

        \b
          ft-prep sql --split valid | ft-infer -m ckpt | ft-score sql --summary s.json
          ft-score sql scored-sql.jsonl --match spider -q --summary spider.json > /dev/null
        """
        if match == "spider":
            from ft_common.errors import require_module

            require_module("sqlparse", "ft-score", "spider")  # fail before the first record, not on it
        checker = SqlChecker(lowercase=lowercase, engine=engine, db_dir=db_dir, match=match,
                             limits=Limits(timeout=timeout, max_rows=max_rows))
        score_stream(checker, input, output, summary_path, limit, quiet)

    return sql
