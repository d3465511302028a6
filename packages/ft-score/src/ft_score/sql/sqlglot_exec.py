"""sqlglot's Python executor, guarded (runs inside the strict jailed worker, ft_score.sql.worker).

The executor turns each SQL expression into Python source and evaluates it, with Python's
builtins in reach. Several of the source generator's pieces write parts of the query into that
source unescaped (sqlglot/generators/python.py): the key of a JSON path (`'{key}'`), the unit of
EXTRACT and of INTERVAL, the name of a user-defined type in CAST (`exp.DType.{name}`), and
identifiers, which are quoted but not escaped (a backslash ends the string early). And EXTRACT
is evaluated as `getattr(value, unit)`, which walks to any attribute even when the unit is
escaped. So a completion such as

    SELECT json_extract(k, '$."a'' + str(open(''/tmp/x'', ''w'')) + ''"') FROM t

created a file through `ft-score sql --engine sqlglot`. Two guards, each enough on its own
for the cases above, besides the jail the worker runs in:

1. `refusal(tree)` refuses those query shapes by name before anything is planned: JSON paths,
   EXTRACT, INTERVAL, CAST to a user-defined type, lambdas, identifiers holding a backslash, a
   quote or a control character.
2. Every piece of generated Python is parsed and checked against an allowlist before it is
   compiled (`check_python`): calls only of the executor's own functions by name (EXTRACT
   excepted), no attribute but `exp.DType.NAME`, `scope` only as `scope[...]`, no other names,
   no keyword or starred arguments, no lambda parameters. Injected code that survived 1 can at
   most call the executor's SQL functions on data.

A refused query is an execution error whose reason starts with "denied by the sandbox".
"""

from __future__ import annotations

import ast
import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ExecuteError
from sqlglot.executor.env import ENV
from sqlglot.executor.python import PythonExecutor
from sqlglot.executor.table import ensure_tables
from sqlglot.helper import dict_depth
from sqlglot.optimizer import optimize
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.planner import Plan
from sqlglot.schema import ensure_schema, flatten_schema, nested_get, nested_set

from ft_score.sql.sandbox import (
    DENIED,
    EXECUTION_ERROR,
    TIMEOUT,
    UNPARSABLE,
    Deadline,
    Limits,
    QueryResult,
    is_statement,
)


class Unsafe(ValueError):
    """A query (or the Python generated from it) that the guard refuses."""


# ---------------------------------------------------------------- 1. query shapes

_BAD_IDENTIFIER = re.compile(r'[\\"\'\x00-\x1f\x7f]')
_JSON = tuple(getattr(exp, name) for name in ("JSONPath", "JSONPathPart", "JSONExtract", "JSONExtractScalar",
                                              "JSONBExtract", "JSONBExtractScalar") if hasattr(exp, name))


def refusal(tree: exp.Expr) -> str | None:
    """Why the guard refuses this query, or None."""
    for node in tree.walk():
        if isinstance(node, _JSON):
            return "JSON paths: the executor writes their keys into Python unescaped"
        if isinstance(node, exp.Extract):
            return "EXTRACT: the executor writes its unit into Python and reads it with getattr"
        if isinstance(node, exp.Interval):
            return "INTERVAL: the executor writes its unit into Python unescaped"
        if isinstance(node, exp.Lambda):
            return "lambdas: their parameters become Python names"
        if isinstance(node, exp.DataType) and node.this == exp.DType.USERDEFINED:
            return "CAST to a user-defined type: the executor writes its name into Python unescaped"
        if isinstance(node, exp.Identifier) and _BAD_IDENTIFIER.search(node.name):
            return "an identifier with a backslash, a quote or a control character"
    return None


# ---------------------------------------------------------------- 2. the generated Python

_CALLABLE = (frozenset(k for k, v in ENV.items() if callable(v) and not isinstance(v, type(exp)))
             - {"EXTRACT"}) | {"set", "SUBQUERY_EXISTS", "SUBQUERY_SCALAR", "SUBQUERY_COMPARISON"}
_NODES = (ast.Expression, ast.Call, ast.Name, ast.Load, ast.Constant, ast.Attribute, ast.Subscript,
          ast.Slice, ast.Tuple, ast.List, ast.Set, ast.Lambda, ast.arguments, ast.IfExp, ast.Compare,
          ast.UnaryOp, ast.BinOp, ast.BoolOp, ast.cmpop, ast.unaryop, ast.operator, ast.boolop)


def _is_dtype(node: ast.AST) -> bool:
    """`exp.DType.NAME`: the one attribute access the generator writes (CAST's target type)."""
    return (isinstance(node, ast.Attribute) and not node.attr.startswith("_")
            and isinstance(node.value, ast.Attribute) and node.value.attr == "DType"
            and isinstance(node.value.value, ast.Name) and node.value.value.id == "exp")


def check_python(source: str) -> None:
    """Raise Unsafe unless `source` is an expression of the shape the generator writes for honest SQL."""
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise Unsafe("the generated Python does not parse (an injection?)") from None
    allowed: set[int] = set()  # the Name nodes whose place makes them allowed
    for node in ast.walk(tree):
        if not isinstance(node, _NODES):
            raise Unsafe(f"generated Python uses {type(node).__name__}")
        if isinstance(node, ast.Call):
            if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
                raise Unsafe("generated Python passes keyword or starred arguments")
            if isinstance(node.func, ast.Name) and node.func.id in _CALLABLE:
                allowed.add(id(node.func))
                if node.func.id.startswith("SUBQUERY_"):
                    allowed.update(id(a) for a in node.args if isinstance(a, ast.Name) and a.id == "scope")
            elif not _is_dtype(node.func):
                raise Unsafe("generated Python calls something other than the executor's functions")
        elif isinstance(node, ast.Attribute):
            if _is_dtype(node):
                allowed.add(id(node.value.value))
            elif not (isinstance(node.value, ast.Name) and node.value.id == "exp" and node.attr == "DType"):
                raise Unsafe(f"generated Python reads the attribute {node.attr!r}")
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "scope":
            allowed.add(id(node.value))
        elif isinstance(node, ast.Lambda) and (node.args.args or node.args.vararg or node.args.kwarg
                                               or node.args.kwonlyargs or node.args.posonlyargs):
            raise Unsafe("generated Python defines a lambda with parameters")
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in allowed:
            raise Unsafe(f"generated Python names {node.id!r}")


class _CheckedGenerator:
    """The executor's Python generator, with every piece of source it writes checked first."""

    def __init__(self, generator):
        self._generator = generator

    def generate(self, expression) -> str:
        source = self._generator.generate(expression)
        check_python(source)
        return source

    def __getattr__(self, name):
        return getattr(self._generator, name)


class GuardedExecutor(PythonExecutor):
    """sqlglot's PythonExecutor whose generated Python passes check_python before it is compiled."""

    def __init__(self, env=None, tables=None):
        super().__init__(env=env, tables=tables)
        self.generator = _CheckedGenerator(self.generator)


def execute(tree: exp.Expr, schema: dict | None = None, tables: dict | None = None):
    """sqlglot.executor.execute (its defaults: no dialect), on a parsed tree, with GuardedExecutor."""
    tables_ = ensure_tables(tables)
    if not schema:  # as sqlglot does: types from each table's first row
        schema = {}
        for keys in flatten_schema(tables_.mapping, depth=dict_depth(tables_.mapping)):
            table = nested_get(tables_.mapping, *zip(keys, keys, strict=True))
            for column in table.columns:
                value = table[0][column]
                nested_set(schema, [*keys, column], annotate_types(exp.convert(value)).type or type(value).__name__)
    schema = ensure_schema(schema)
    if tables_.supported_table_args and tables_.supported_table_args != schema.supported_table_args:
        raise ExecuteError("Tables must support the same table args as schema")
    expression = optimize(tree, schema, leave_tables_isolated=True)
    return GuardedExecutor(tables=tables_).execute(Plan(expression))


# ---------------------------------------------------------------- one query, as the worker runs it


def run_query(sql: str, tables: dict, schema: dict, limits: Limits) -> QueryResult:
    """Parse, check and execute one query (the caller arms the deadline); never raises for a bad query."""
    if not sql.strip():
        return QueryResult(None, UNPARSABLE, "empty query")
    try:
        try:
            expression = sqlglot.parse_one(sql, read="sqlite")
        except sqlglot.errors.ParseError as exc:
            return QueryResult(None, UNPARSABLE, str(exc).splitlines()[0])
        except RecursionError:
            return QueryResult(None, UNPARSABLE, "nested too deeply to parse")
        if not isinstance(expression, exp.Query):
            if is_statement(expression):
                return QueryResult(None, EXECUTION_ERROR, f"{DENIED} (not a query: {expression.key})")
            return QueryResult(None, UNPARSABLE, "not a SQL statement")
        reason = refusal(expression)
        if reason:
            return QueryResult(None, EXECUTION_ERROR, f"{DENIED} ({reason})")
        rows = execute(expression, schema=schema, tables=tables).rows
        if len(rows) > limits.max_rows:
            return QueryResult(None, EXECUTION_ERROR, f"more than {limits.max_rows} result rows")
        if sum(len(v) if isinstance(v, str | bytes) else 8 for row in rows for v in row) > limits.max_result_bytes:
            return QueryResult(None, EXECUTION_ERROR, f"a result over {limits.max_result_bytes:,} bytes")
        return QueryResult([tuple(row) for row in rows])
    except Deadline:
        return QueryResult(None, TIMEOUT, f"over {limits.timeout:g}s")
    except MemoryError:
        return QueryResult(None, EXECUTION_ERROR, f"over the {limits.memory_mb} MB memory limit")
    except RecursionError:
        return QueryResult(None, EXECUTION_ERROR, "query nested too deeply")
    except Exception as exc:  # the executor's own errors, unsupported features
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, Deadline):
            return QueryResult(None, TIMEOUT, f"over {limits.timeout:g}s")
        if isinstance(cause, MemoryError):
            return QueryResult(None, EXECUTION_ERROR, f"over the {limits.memory_mb} MB memory limit")
        if isinstance(exc, Unsafe) or isinstance(cause, Unsafe):
            return QueryResult(None, EXECUTION_ERROR, f"{DENIED} ({exc if isinstance(exc, Unsafe) else cause})")
        message = str(exc).strip() or type(cause).__name__
        return QueryResult(None, EXECUTION_ERROR, f"{type(exc).__name__}: {message.splitlines()[0]}")
