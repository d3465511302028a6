"""Test tables for execution checking: synthetic rows that make the reference query meaningful.

The case study kept a row only when its reference query, run on the row's test
tables, returned a result that is neither empty nor the whole table. Here the
tables are generated deterministically (seeded by --seed and the row id) from the
schema and the query's literals, no LLM needed:

- a column compared with a literal gets, in the positive rows, a value that
  satisfies every comparison on it (= / IN / LIKE values, or one inside the
  < > bounds); each negative row fails at least one comparison;
- columns joined with `a = b`, and GROUP BY columns, draw from one small shared
  pool, so joins match and groups have several rows;
- each candidate is checked by running the reference on it with sqlglot's
  executor, planned as sqlglot.executor.execute plans it, and then in an
  in-memory SQLite database (ft-score's two engines); up to ATTEMPTS seeded
  variants are tried.

A result is valid when it has a row with a value that is not NULL/0/'' and has
fewer rows than the largest table the query reads. `llm_tables` asks an
OpenAI-compatible model for the rows instead (the case study used GPT-3.5) and
applies the same check.
"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
from collections.abc import Callable

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.executor.python import PythonExecutor
from sqlglot.executor.table import ensure_tables
from sqlglot.optimizer import RULES, optimize
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.planner import Plan

from ft_prep.sql.build import INTEGER, Built, quote

ATTEMPTS = 6
Key = tuple[str, str]
Tables = dict[str, dict]  # {table: {columns: [[name, type], ...], rows: [[v, ...], ...]}}


def _value(node: exp.Expression):
    """The Python value of a literal (or -literal), else raise ValueError."""
    neg = isinstance(node, exp.Neg)
    node = node.this if neg else node
    if not isinstance(node, exp.Literal):
        raise ValueError("not a literal")
    if node.is_string:
        return node.this
    number = float(node.this) if re.search(r"[.eE]", node.this) else int(node.this)
    return -number if neg else number


def _like_value(pattern) -> str:
    return str(pattern).replace("%", "").replace("_", "x")


class Constraints:
    """What the query's WHERE/HAVING/ON clauses say about each column."""

    def __init__(self, built: Built):
        self.ops: dict[Key, list[tuple[str, object]]] = {}
        self.parent: dict[Key, Key] = {}
        for node in built.ast.find_all(exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like,
                                       exp.ILike, exp.In, exp.Between):
            self._add(node, built.columns)
        # GROUP BY columns draw from a small pool too, so groups have several rows (HAVING COUNT(*) > 1)
        self.grouped = {built.columns[id(c)] for g in built.ast.find_all(exp.Group)
                        for c in g.find_all(exp.Column) if id(c) in built.columns}

    def _key(self, node, columns) -> Key | None:
        return columns.get(id(node)) if isinstance(node, exp.Column) else None

    def _add(self, node, columns) -> None:
        op = type(node).__name__.lower()
        left = self._key(node.this, columns)
        if isinstance(node, exp.In):
            if left:
                for v in node.expressions:
                    self._op(left, "eq", v)
            return
        if isinstance(node, exp.Between):
            if left:
                self._op(left, "gte", node.args.get("low"))
                self._op(left, "lte", node.args.get("high"))
            return
        right = self._key(node.expression, columns)
        if left and right and op == "eq":
            self.parent[self._find(left)] = self._find(right)
        elif left and not right:
            self._op(left, op, node.expression)
        elif right and not left:
            flipped = {"gt": "lt", "lt": "gt", "gte": "lte", "lte": "gte"}.get(op, op)
            self._op(right, flipped, node.this)

    def _op(self, key: Key, op: str, node) -> None:
        try:
            value = _value(node)
        except ValueError:
            return
        if op in ("like", "ilike"):
            op, value = "eq", _like_value(value)
        self.ops.setdefault(key, []).append((op, value))

    def _find(self, key: Key) -> Key:
        while key in self.parent:
            key = self.parent[key]
        return key

    def pooled(self, key: Key) -> bool:
        return key in self.parent or key in self.parent.values() or key in self.grouped

    def satisfy(self, key: Key, rng: random.Random, numeric: bool):
        ops = self.ops.get(key, [])
        eqs = [v for op, v in ops if op == "eq"]
        if eqs:
            return rng.choice(eqs)
        lo = [v for op, v in ops if op in ("gt", "gte")]
        hi = [v for op, v in ops if op in ("lt", "lte")]
        if any(isinstance(v, str) for v in lo + hi):  # string order: dates and names
            if lo:
                return max(map(str, lo)) + "~"
            return min(map(str, hi))[:-1]
        strict_lo = any(op == "gt" for op, _ in ops)
        strict_hi = any(op == "lt" for op, _ in ops)
        low = max(lo) + (1 if strict_lo else 0) if lo else None
        high = min(hi) - (1 if strict_hi else 0) if hi else None
        if low is not None and high is not None:
            if low > high:  # `x > 10 OR x < 5`: satisfy one side
                return rng.choice([low + rng.randint(0, 5), high - rng.randint(0, 5)])
            return rng.randint(int(low), int(high)) if high - low < 10**9 else low
        if low is not None:
            return low + rng.randint(0, 5)
        if high is not None:
            return high - rng.randint(0, 5)
        neq = [v for op, v in ops if op == "neq"]
        return _filler(key[1], rng, numeric, avoid=neq)

    def violate(self, key: Key, rng: random.Random, numeric: bool):
        """A value that fails the comparisons on the column (so negative rows are filtered out)."""
        ops = self.ops.get(key, [])
        neq = [v for op, v in ops if op == "neq"]
        if neq:
            return rng.choice(neq)
        lo = [v for op, v in ops if op in ("gt", "gte")]
        hi = [v for op, v in ops if op in ("lt", "lte")]
        if any(isinstance(v, str) for v in lo + hi):
            return min(map(str, lo))[:-1] if lo else max(map(str, hi)) + "~"
        if lo:
            return min(lo) - rng.randint(1, 10)
        if hi:
            return max(hi) + rng.randint(1, 10)
        eqs = [v for op, v in ops if op == "eq"]
        numeric = numeric or any(isinstance(v, int | float) for v in eqs)
        return _filler(key[1], rng, numeric, avoid=eqs)


def _filler(column: str, rng: random.Random, numeric: bool, avoid=()):
    for _ in range(5):
        value = rng.randint(1, 100) if numeric else f"{column} {rng.randint(1, 5)}"
        if value not in avoid:
            return value
    return value


def generate(built: Built, cons: Constraints, rng: random.Random, pool: int = 3) -> dict[str, list[dict]]:
    """One candidate: {table: [ {column: value}, ... ]}; joined/grouped columns draw from 1..pool."""
    out: dict[str, list[dict]] = {}
    for table, cols in built.tables.items():
        n = rng.randint(4, 6)
        positives = rng.randint(1, n - 2)
        constrained = [c for c in cols if (table, c) in cons.ops]
        rows = []
        for r in range(n):
            # positive rows satisfy every comparison; negative rows fail at least one
            forced = rng.choice(constrained) if constrained and r >= positives else None
            row = {}
            for col, ty in cols.items():
                key, numeric = (table, col), ty == INTEGER
                if key in cons.ops:
                    fail = col == forced or (r >= positives and rng.random() < 0.3)
                    row[col] = cons.violate(key, rng, numeric) if fail else cons.satisfy(key, rng, numeric)
                elif cons.pooled(key):
                    k = rng.randint(1, pool)
                    row[col] = k if numeric else f"k{k}"
                else:
                    row[col] = _filler(col, rng, numeric)
            rows.append(row)
        rng.shuffle(rows)
        out[table] = rows
    return out


def _simple(built: Built) -> bool:
    return len(built.tables) == 1 and not built.ast.find(exp.Join, exp.Subquery, exp.SetOperation)


def _lists_everything(ast: exp.Expression) -> bool:
    """A plain listing (no WHERE, GROUP BY, LIMIT, DISTINCT, join or aggregate) returns every row
    of its table whatever the data: no table can make it valid, so no candidate is tried."""
    return (isinstance(ast, exp.Select) and not ast.args.get("distinct")
            and not any(ast.args.get(k) for k in ("where", "group", "having", "limit", "joins"))
            and not ast.find(exp.AggFunc, exp.Subquery))


def _unsafe_for_executor(ast: exp.Expression) -> bool:
    """Shapes that sqlglot's executor writes into the Python it evaluates unescaped (JSON path keys,
    EXTRACT and INTERVAL units, user-defined CAST types, identifiers with quotes or backslashes; see
    ft_score.sqlglot_exec, which also checks the generated code). The dataset's query must not reach
    it with one, so no tables are made for such a row."""
    return (bool(ast.find(exp.Extract, exp.Interval, exp.JSONExtract, exp.JSONExtractScalar, exp.JSONPath, exp.Lambda))
            or any(re.search(r"[\\\"'\x00-\x1f\x7f]", i.name) for i in ast.find_all(exp.Identifier))
            or any(d.this == exp.DataType.Type.USERDEFINED for d in ast.find_all(exp.DataType)))


_TYPES: dict[type, object] = {}


def _value_type(value):
    """The column type sqlglot.executor.execute infers from a value (cached per Python type)."""
    kind = type(value)
    if kind not in _TYPES:
        _TYPES[kind] = annotate_types(exp.convert(value)).type or kind.__name__
    return _TYPES[kind]


class Runner:
    """Runs the reference on candidate tables exactly as sqlglot.executor.execute would.

    execute() optimises the query against a schema inferred from each table's first row;
    Runner does the same but keeps one plan per inferred schema, so the optimiser runs once
    per row instead of once per candidate. A query on one table with no join or subquery
    (all of WikiSQL) needs only the column qualification step, at a third of the cost, with
    the same results. INTERSECT / EXCEPT / UNION are refused: the executor gives them
    unstable results.
    """

    def __init__(self, built: Built):
        self.built = built
        self.supported = (not built.ast.find(exp.SetOperation) and not _lists_everything(built.ast)
                          and not _unsafe_for_executor(built.ast))
        self.rules = (qualify,) if _simple(built) else RULES
        self.plans: dict[tuple, Plan | None] = {}
        self.sqlite_sql: str | None = None

    def plan(self, candidate: dict[str, list[dict]]) -> Plan | None:
        schema = {t: {c: _value_type(v) for c, v in rows[0].items()} for t, rows in candidate.items() if rows}
        key = tuple((t, tuple((c, str(ty)) for c, ty in cols.items())) for t, cols in schema.items())
        if key not in self.plans:
            try:
                expression = optimize(self.built.ast.copy(), schema, leave_tables_isolated=True, rules=self.rules)
                self.plans[key] = Plan(expression)
            except (SqlglotError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
                self.plans[key] = None
        return self.plans[key]

    def check(self, candidate: dict[str, list[dict]]) -> bool:
        """The case study's validity rule: a result neither empty nor the whole table,
        in SQLite and in sqlglot's executor (ft-score's two engines). SQLite goes first:
        it is the cheap check, and most rejected candidates fail there."""
        if not self.supported or not self.check_sqlite(candidate):
            return False
        plan = self.plan(candidate)
        if plan is None:
            return False
        try:
            rows = PythonExecutor(tables=ensure_tables(candidate)).execute(plan).rows
        except Exception:  # the executor raises many kinds on queries it cannot run
            return False
        return _valid(rows, candidate)

    def check_sqlite(self, candidate: dict[str, list[dict]]) -> bool:
        """The same rule in an in-memory SQLite database (ft-score's default engine).

        The tables live in a transaction that is rolled back, so one connection serves all rows.
        """
        if self.sqlite_sql is None:
            self.sqlite_sql = self.built.ast.sql(dialect="sqlite")
        conn = _sqlite()
        conn.execute("BEGIN")
        try:
            for table, rows in candidate.items():
                cols = self.built.tables[table]
                conn.execute(f"CREATE TABLE {quote(table)} ({', '.join(f'{quote(c)} {t}' for c, t in cols.items())})")
                conn.executemany(f"INSERT INTO {quote(table)} VALUES ({', '.join('?' * len(cols))})",
                                 [[row[c] for c in cols] for row in rows])
            return _valid(conn.execute(self.sqlite_sql).fetchall(), candidate)
        except (sqlite3.Error, OverflowError):
            return False
        finally:
            conn.execute("ROLLBACK")


_connections: dict[int, sqlite3.Connection] = {}


def _sqlite() -> sqlite3.Connection:
    """This process's in-memory scratch database (one per pid: connections do not survive fork)."""
    pid = os.getpid()
    if pid not in _connections:
        _connections[pid] = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    return _connections[pid]


def _valid(rows: list, candidate: dict[str, list[dict]]) -> bool:
    """Not empty (some value other than NULL/0/''), and fewer rows than the largest table read."""
    if not rows or not any(v not in (None, 0, "") for row in rows for v in row):
        return False
    return len(rows) < max(len(r) for r in candidate.values())


def as_meta(built: Built, candidate: dict[str, list[dict]]) -> Tables:
    return {t: {"columns": [[c, ty] for c, ty in cols.items()],
                "rows": [[row[c] for c in cols] for row in candidate[t]]}
            for t, cols in built.tables.items()}


def synthetic_tables(built: Built, seed: str, attempts: int = ATTEMPTS) -> Tables | None:
    """Deterministic test tables on which the reference gives a valid result, or None."""
    runner = Runner(built)
    if not runner.supported:
        return None
    cons = Constraints(built)
    for attempt in range(attempts):
        candidate = generate(built, cons, random.Random(f"{seed}:{attempt}"), pool=2 + attempt // 2)
        if runner.check(candidate):
            return as_meta(built, candidate)
    return None


# --- tables written by a model (--tables llm) ---------------------------------------------

LLM_PROMPT = """Here are the CREATE TABLE statements of some tables and a SQL query over them.

{context}

Query: {query}

Write 4 to 6 rows for each table so that the query returns a result that is not empty and is not
the whole table. Reply with JSON only, one key per table, each a list of rows, each row a list of
values in the column order of its CREATE TABLE statement. Example: {{"t": [[1, "a"], [2, "b"]]}}"""


def parse_llm_tables(text: str, built: Built) -> dict[str, list[dict]] | None:
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    out = {}
    for table, cols in built.tables.items():
        rows = data.get(table) if isinstance(data, dict) else None
        if not isinstance(rows, list) or not rows:
            return None
        names = list(cols)
        if not all(isinstance(r, list) and len(r) == len(names) for r in rows):
            return None
        out[table] = [dict(zip(names, r, strict=True)) for r in rows]
    return out


def llm_tables(built: Built, ask: Callable[[str], str], attempts: int = 2) -> Tables | None:
    """Ask a model (ask: prompt -> reply text) for rows; keep them only if they pass `check`."""
    runner = Runner(built)
    if not runner.supported:
        return None
    prompt = LLM_PROMPT.format(context=built.context, query=built.answer)
    for _ in range(attempts):
        candidate = parse_llm_tables(ask(prompt), built)
        if candidate and runner.check(candidate):
            return as_meta(built, candidate)
    return None


def openai_asker(base_url: str, model: str, api_key: str | None = None) -> Callable[[str], str]:
    """ask(prompt) through an OpenAI-compatible chat endpoint (the `llm` extra)."""
    from ft_common import secrets
    from ft_common.errors import FtError, require_module

    openai = require_module("openai", "ft-prep", "llm")
    secrets.register(api_key)  # scrubbed from every error line and -v traceback
    client = openai.OpenAI(base_url=base_url, api_key=api_key or "unused")

    def ask(prompt: str) -> str:
        try:
            reply = client.chat.completions.create(
                model=model, temperature=0, messages=[{"role": "user", "content": prompt}])
        except openai.OpenAIError as exc:  # an endpoint may echo the key in its error body
            raise FtError(secrets.scrub(f"--tables llm ({model}): {type(exc).__name__}: {exc}")) from exc
        return reply.choices[0].message.content or ""

    return ask
