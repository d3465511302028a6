"""Build sql-create-context rows ({question, context, answer}) from WikiSQL and Spider.

As b-mc2/sql-create-context was built: parse each query with sqlglot, collect the
tables and columns it uses, infer column types (INTEGER where a column is compared
with < > <= >= or BETWEEN, or aggregated with MIN/MAX/AVG/SUM; else VARCHAR), emit
CREATE TABLE statements and the normalised query. Queries that do not parse are
counted and dropped (`SqlDrop`).

Identifiers are lower-cased (quoted only where needed), string literals single-quoted.

`--sql-types` handles references that treat a VARCHAR column as a number
(`WHERE finish = 24` with `finish VARCHAR`): `fix` quotes the literal ('24'),
`drop` drops the row, `keep` leaves it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import traverse_scope

INTEGER, VARCHAR = "INTEGER", "VARCHAR"
SQL_TYPES = ("fix", "drop", "keep")
_SAFE = re.compile(r"^[a-z_][a-z0-9_]*$")
_KEYWORDS = frozenset("""
all and as asc between by case check create default delete desc distinct drop else end except exists
from group having in index inner insert intersect into is join key left like limit not null offset on
or order outer primary references right select set table then to union unique update values when where
with cross natural full using
""".split())


class SqlDrop(Exception):
    """A query dropped on purpose; `reason` is the Stats key it is counted under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason


@dataclass
class Built:
    """One built row: the normalised query and the schema it uses."""

    ast: exp.Expression
    tables: dict[str, dict[str, str]]  # table -> column -> INTEGER/VARCHAR, in order of appearance
    columns: dict[int, tuple[str, str]] = field(default_factory=dict)  # id(Column node) -> (table, column)
    type_fixes: int = 0

    @property
    def answer(self) -> str:
        return self.ast.sql(copy=False)

    @property
    def context(self) -> str:
        return create_tables(self.tables)


def quote(name: str) -> str:
    """An identifier as SQL text: bare when safe, else double-quoted."""
    if _SAFE.match(name) and name not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def create_tables(tables: dict[str, dict[str, str]]) -> str:
    return "; ".join(
        f"CREATE TABLE {quote(t)} ({', '.join(f'{quote(c)} {ty}' for c, ty in cols.items())})"
        for t, cols in tables.items()
    )


def _normalise_identifiers(ast: exp.Expression) -> None:
    for ident in ast.find_all(exp.Identifier):
        name = ident.this.lower()
        ident.set("this", name)
        ident.set("quoted", not (_SAFE.match(name) and name not in _KEYWORDS))


def _is_number(node: exp.Expression) -> bool:
    if isinstance(node, exp.Neg):
        node = node.this
    return isinstance(node, exp.Literal) and node.is_number


def build(sql: str, dialect: str | None = None, schema_hint: dict[str, set[str]] | None = None,
          sql_types: str = "fix") -> Built:
    """Parse, normalise and type one query. schema_hint (table -> columns) resolves unqualified columns."""
    try:
        ast = sqlglot.parse_one(sql, read=dialect)
    except (SqlglotError, ValueError, RecursionError) as exc:
        raise SqlDrop("sql_unparsable", str(exc)) from None
    if not isinstance(ast, exp.Query):
        raise SqlDrop("sql_unparsable", "not a SELECT query")
    _normalise_identifiers(ast)
    built = Built(ast=ast, tables={})
    _collect(built, schema_hint or {})
    if not built.tables:
        raise SqlDrop("sql_unparsable", "no table")
    _infer_types(built)
    _check_types(built, sql_types)
    for cols in built.tables.values():
        if not cols:
            cols["id"] = VARCHAR  # sql-create-context gives a table no query column a placeholder
    return built


def _collect(built: Built, hint: dict[str, set[str]]) -> None:
    aliases: dict[str, str] = {}
    for table in built.ast.find_all(exp.Table):
        if table.name:
            built.tables.setdefault(table.name, {})
            aliases[table.alias_or_name] = table.name
    try:
        scopes = traverse_scope(built.ast)
    except (SqlglotError, ValueError) as exc:
        raise SqlDrop("sql_unparsable", str(exc)) from None
    for scope in scopes:
        sources = {a: s.name for a, s in scope.sources.items() if isinstance(s, exp.Table)}
        select_aliases = {s.alias for s in getattr(scope.expression, "selects", []) if isinstance(s, exp.Alias)}
        for col in scope.columns:
            name = col.name
            if not name or isinstance(col.this, exp.Star):
                continue
            if col.table:
                table = sources.get(col.table) or aliases.get(col.table)
                if table is None:
                    continue  # a column of a derived table
            else:
                candidates = list(dict.fromkeys(sources.values()))
                if not candidates:
                    continue
                known = [t for t in candidates if name in hint.get(t, ())]
                if name in select_aliases and not known:
                    continue  # ORDER BY an alias of the select list
                table = known[0] if known else candidates[0]
            built.tables.setdefault(table, {}).setdefault(name, VARCHAR)
            built.columns[id(col)] = (table, name)


def _infer_types(built: Built) -> None:
    numeric: list[exp.Expression] = []
    for node in built.ast.find_all(exp.GT, exp.GTE, exp.LT, exp.LTE):
        numeric += [node.this, node.expression]
    for node in built.ast.find_all(exp.Between):
        numeric.append(node.this)
    for node in built.ast.find_all(exp.Min, exp.Max, exp.Avg, exp.Sum):
        numeric += list(node.this.find_all(exp.Column)) if node.this else []
    for node in numeric:
        key = built.columns.get(id(node)) if isinstance(node, exp.Column) else None
        if key:
            built.tables[key[0]][key[1]] = INTEGER


def _check_types(built: Built, sql_types: str) -> None:
    """Find VARCHAR columns compared with numbers; fix, drop or keep per --sql-types."""
    pairs: list[tuple[exp.Expression, exp.Expression]] = []
    for node in built.ast.find_all(exp.EQ, exp.NEQ):
        pairs += [(node.this, node.expression), (node.expression, node.this)]
    for node in built.ast.find_all(exp.In):
        pairs += [(node.this, v) for v in node.expressions]
    for col, value in pairs:
        key = built.columns.get(id(col)) if isinstance(col, exp.Column) else None
        if key and built.tables[key[0]][key[1]] == VARCHAR and _is_number(value):
            if sql_types == "drop":
                raise SqlDrop("sql_types_dropped")
            if sql_types == "fix":
                text = value.sql()
                value.replace(exp.Literal.string(text))
                built.type_fixes += 1


# --- WikiSQL (text2sql-data format) -------------------------------------------------------

_TOKEN = re.compile(r'"[^"]*"|\S+')
_AGGS = {"COUNT", "MAX", "MIN", "AVG", "SUM"}
_OPS = {"=", ">", "<", ">=", "<=", "!="}
_VAR = re.compile(r"^var\d+$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def wikisql_column(field_token: str) -> str:
    """'TABLEalias0.PICK_#_FIELD' -> 'pick__number' (sql-create-context's column naming)."""
    name = field_token.split(".", 1)[1] if field_token.startswith("TABLEalias0.") else field_token
    name = name[: -len("_FIELD")] if name.endswith("_FIELD") else name
    name = name.lower().replace("#", "_number")
    return re.sub(r"[^a-z0-9_]", "_", name) or "col"


def wikisql_table(table_id: str) -> str:
    """'1-1000181-1' -> 'table_1000181_1'; '2-1226335-1' -> 'table_2_1226335_1'."""
    tid = table_id[2:] if table_id.startswith("1-") else table_id
    return "table_" + re.sub(r"[^A-Za-z0-9]", "_", tid)


def _original_case(value: str, question: str) -> str:
    """The value as the question spells it (text2sql-data lower-cases many values)."""
    i = question.lower().find(value.lower())
    return question[i : i + len(value)] if i >= 0 and value else value


def _literal(token: str, variables: dict[str, str], question: str) -> str:
    quoted = token.startswith('"') and token.endswith('"') and len(token) >= 2
    body = token[1:-1] if quoted else token
    if _VAR.match(body):
        if body not in variables:
            raise SqlDrop("sql_unparsable", f"no value for {body}")
        body = _original_case(variables[body], question)
    if not quoted and _NUMBER.match(body):
        return body
    return "'" + body.replace("'", "''") + "'"


def wikisql_sql(template: str, variables: dict[str, str], table_id: str, question: str) -> str:
    """A text2sql-data WikiSQL template with its variables filled in, as plain SQL text."""
    tokens = _TOKEN.findall(template.strip().rstrip(";").strip())
    if len(tokens) < 4 or tokens[0] != "SELECT":
        raise SqlDrop("sql_unparsable", "not a SELECT")
    i = 1
    agg = tokens[i] if tokens[i] in _AGGS else None
    i += 1 if agg else 0
    column = quote(wikisql_column(tokens[i]))
    select = f"{agg}({column})" if agg else column
    try:
        where_at = tokens.index("WHERE")
    except ValueError:
        where_at = len(tokens)
    conditions = []
    rest = tokens[where_at + 1 :]
    while rest:
        if len(rest) < 3 or rest[1] not in _OPS:
            raise SqlDrop("sql_unparsable", f"cannot read condition {' '.join(rest[:3])!r}")
        conditions.append(f"{quote(wikisql_column(rest[0]))} {rest[1]} {_literal(rest[2], variables, question)}")
        rest = rest[3:]
        if rest:
            if rest[0] != "AND":
                raise SqlDrop("sql_unparsable", f"expected AND, got {rest[0]!r}")
            rest = rest[1:]
    sql = f"SELECT {select} FROM {wikisql_table(table_id)}"
    return sql + (" WHERE " + " AND ".join(conditions) if conditions else "")
