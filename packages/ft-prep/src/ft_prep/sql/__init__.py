"""sql: question + CREATE TABLE context -> SQL query, with test tables in `meta`.

Sources (`--source`):
  wikisql   ../shared/data/sql/wikisql/wikisql.json.bz2 (text2sql-data format), built by sql.build
  spider    ../shared/data/sql/spider (train_spider_questions.json + tables.json), built by sql.build
  all       both, WikiSQL first (as sql-create-context combined them)
  FILE      a JSON/JSONL file of sql-create-context rows {question, context, answer}
  (no --data) the hub's b-mc2/sql-create-context

Splits: WikiSQL's own train/dev/test (dev is --split valid). Spider's training part
only is here: --split valid holds out whole databases, those whose
sha256("ft-prep/spider-valid" NUL db_id) maps below SPIDER_VALID_FRACTION; --split
train is the other databases; there is no Spider test split. sql-create-context
files and the hub have one split: valid is a 5% carve-out by the hash of the
question and answer, train the rest.
"""

from __future__ import annotations

import bz2
import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from ft_common.errors import InputError, UsageError
from ft_common.tasks.sql import sql_input
from sqlglot import exp

from ft_prep.common import BadRow, Row, Stats, convert, field, stable_fraction, task_record
from ft_prep.sql.build import INTEGER, VARCHAR, Built, SqlDrop, build, wikisql_sql
from ft_prep.sql.tables import llm_tables, synthetic_tables

# Without --data (read by ft_prep.sources): the hub's sql-create-context, one split.
HUB = ("b-mc2/sql-create-context", None, {"train": "train"})

SPIDER_VALID_FRACTION = 0.10
SPIDER_VALID_SALT = "ft-prep/spider-valid"
FILE_VALID_FRACTION = 0.05
FILE_VALID_SALT = "ft-prep/sql-valid"
TABLE_MODES = ("synthetic", "llm", "none")
WIKISQL_SPLITS = {"train": "train", "dev": "valid", "test": "test"}


@dataclass
class SqlOptions:
    sql_types: str = "fix"  # fix | drop | keep
    tables: str = "synthetic"  # synthetic | llm | none
    require_tables: bool = False  # drop rows that got no valid tables
    seed: int = 0
    db_dir: str | None = None  # Spider databases: DB_DIR/DB_ID/DB_ID.sqlite
    ask: Callable[[str], str] | None = None  # --tables llm: prompt -> reply


# --- source rows --------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def _load_json(path: str, mtime: float) -> list:
    opener = bz2.open if path.endswith(".bz2") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def wikisql_rows(path: str | Path) -> Iterator[Row]:
    """One Row per WikiSQL sentence; index counts sentences over the whole file."""
    name = str(path)
    try:
        entries = _load_json(name, os.path.getmtime(name))
    except (OSError, json.JSONDecodeError, EOFError) as exc:
        raise InputError(f"{name}: cannot read ({exc})") from None
    index = 0
    for e, entry in enumerate(entries):
        sqls = entry.get("sql") or [None]
        for sentence in entry.get("sentences", []):
            yield Row(index, {"question": sentence.get("original"), "sql": sqls[0],
                              "variables": sentence.get("variables", {}), "table_id": sentence.get("table-id"),
                              "split": WIKISQL_SPLITS.get(sentence.get("question-split"), "train"),
                              "source": "wikisql"}, f"{name} entry {e} (sentence {index})")
            index += 1


def spider_valid(db_id: str) -> bool:
    return stable_fraction(db_id, SPIDER_VALID_SALT) < SPIDER_VALID_FRACTION


def spider_hints(tables_json: str | Path) -> dict[str, dict[str, set[str]]]:
    """{db_id: {table: {columns}}} from Spider's tables.json (lower-cased), to place bare columns."""
    with open(tables_json, encoding="utf-8") as fh:
        dbs = json.load(fh)
    hints: dict[str, dict[str, set[str]]] = {}
    for db in dbs:
        tables = [t.lower() for t in db["table_names_original"]]
        cols: dict[str, set[str]] = {t: set() for t in tables}
        for t, c in db["column_names_original"]:
            if t >= 0:
                cols[tables[t]].add(c.lower())
        hints[db["db_id"]] = cols
    return hints


def spider_rows(folder: str | Path) -> Iterator[Row]:
    folder = Path(folder)
    path = folder / "train_spider_questions.json"
    try:
        with open(path, encoding="utf-8") as fh:
            items = json.load(fh)
        hints = spider_hints(folder / "tables.json")
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{folder}: cannot read Spider ({exc})") from None
    for i, item in enumerate(items):
        db_id = item.get("db_id")
        yield Row(i, {"question": item.get("SpiderQuestion"), "sql": item.get("query"), "db_id": db_id,
                      "hint": hints.get(db_id, {}), "source": "spider",
                      "split": "valid" if isinstance(db_id, str) and spider_valid(db_id) else "train"},
                  f"{path} row {i}")


def file_split(row: Row) -> str:
    key = f"{row.data.get('question')}\x00{row.data.get('answer')}"
    return "valid" if stable_fraction(key, FILE_VALID_SALT) < FILE_VALID_FRACTION else "train"


def context_schema(context: str) -> dict[str, dict[str, str]]:
    """{table: {column: type}} from CREATE TABLE statements (sql-create-context's context)."""
    schema: dict[str, dict[str, str]] = {}
    for statement in sqlglot.parse(context):
        if not isinstance(statement, exp.Create) or not isinstance(statement.this, exp.Schema):
            continue
        table = statement.this.this.name.lower()
        schema[table] = {
            c.name.lower(): (INTEGER if c.args.get("kind") and c.args["kind"].is_type(*exp.DataType.INTEGER_TYPES) else VARCHAR)
            for c in statement.this.expressions if isinstance(c, exp.ColumnDef)
        }
    return schema


def source_rows(source: str, data: str | None, split: str, load: Callable | None = None) -> Iterator[Row]:
    """Rows of `split` from a --source: wikisql, spider, all (both), or a sql-create-context file."""
    if source in ("wikisql", "spider", "all"):
        if not data:
            raise UsageError(f"--source {source} needs --data (a folder holding sql/{{wikisql,spider}})")
        root = Path(data)
        root = root / "sql" if (root / "sql").is_dir() else root
        if split == "test" and source == "spider":
            raise UsageError("Spider's test split is not here (its dev set neither); use --split train or valid")
        parts = []
        if source in ("wikisql", "all"):
            parts.append(wikisql_rows(root / "wikisql" / "wikisql.json.bz2"))
        if source in ("spider", "all"):
            parts.append(spider_rows(root / "spider"))
        return (row for part in parts for row in part if row.data["split"] == split)
    from ft_prep.sources import hub_rows, read_file

    if split == "test":
        raise UsageError("sql-create-context has only a train split (valid is carved out of it); no test split")
    rows = read_file(source) if source != "hub" else hub_rows("sql", "train", load)
    return (Row(r.index, {**r.data, "source": "hub" if source == "hub" else "local"}, r.where)
            for r in rows if file_split(r) == split)


# --- records ------------------------------------------------------------------------------

def _built(row: Row, options: SqlOptions) -> tuple[str, Built, str | None]:
    """(question, built query, file context or None) of a source row."""
    data = row.data
    source = data["source"]
    if source == "wikisql":
        question = field(row, "question").strip()
        sql = wikisql_sql(field(row, "sql"), field(row, "variables", dict), field(row, "table_id"), question)
        return question, build(sql, sql_types=options.sql_types), None
    if source == "spider":
        question = field(row, "question").strip()
        return question, build(field(row, "sql"), "mysql", data.get("hint"), options.sql_types), None
    question, context, answer = (field(row, k).strip() for k in ("question", "context", "answer"))
    try:
        schema = context_schema(context)
    except sqlglot.errors.SqlglotError:
        raise BadRow("context is not CREATE TABLE statements") from None
    built = build(answer, sql_types="keep", schema_hint={t: set(c) for t, c in schema.items()})
    for table, cols in built.tables.items():  # the file's declared types win
        for col in cols:
            cols[col] = schema.get(table, {}).get(col, cols[col])
    return question, built, context


# Baseline prompts: few-shot text for completion models (`fewshot` records carry `prompt`,
# ending where the answer starts, and `stop`), messages for chat models (`chat` records).
# --- Prompts: SQL ----------------------------------------------------------------------------------
# The case study's baseline: the question and the CREATE TABLE context; the answer inside
# <SQL></SQL> tags (the few-shot prompt ends with the opening tag, so the stop is the closing one).

SQL_SYSTEM = ("You are a SQL expert. Given the CREATE TABLE statements of some tables and a question "
              "about them, write one SQL query that answers the question. Write the query inside "
              "<SQL></SQL> tags and nothing else.")
SQL_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("CREATE TABLE head (age INTEGER)", "How many heads of the departments are older than 56 ?",
     "SELECT COUNT(*) FROM head WHERE age > 56"),
    ("CREATE TABLE table_1000181_1 (notes VARCHAR, current_slogan VARCHAR)",
     "Tell me what the notes are for South Australia",
     "SELECT notes FROM table_1000181_1 WHERE current_slogan = 'SOUTH AUSTRALIA'"),
)


def _sql_user(question: str, context: str) -> str:
    return f"Tables:\n{context}\n\nQuestion: {question}"


SQL_FEWSHOT = SQL_SYSTEM + "\n\n" + "".join(
    f"{_sql_user(q, c)}\nAnswer: <SQL>{a}</SQL>\n\n" for c, q, a in SQL_EXAMPLES
)


def fewshot_prompt(question: str, context: str) -> tuple[str, list[str]]:
    return f"{SQL_FEWSHOT}{_sql_user(question, context)}\nAnswer: <SQL>", ["</SQL>"]


def chat_messages(question: str, context: str) -> list[dict]:
    messages = [{"role": "system", "content": SQL_SYSTEM}]
    for c, q, a in SQL_EXAMPLES:
        messages += [{"role": "user", "content": _sql_user(q, c)}, {"role": "assistant", "content": f"<SQL>{a}</SQL>"}]
    return messages + [{"role": "user", "content": _sql_user(question, context)}]


def make_record(row: Row, split: str, fmt: str, options: SqlOptions, stats: Stats) -> dict | None:
    source = row.data.get("source", "local")
    try:
        question, built, file_context = _built(row, options)
    except SqlDrop as drop:
        stats[drop.reason] += 1
        return None
    if built.type_fixes:
        stats["sql_types_fixed"] += 1
    context = file_context or built.context
    answer = built.answer if file_context is None else row.data["answer"].strip()
    rid = f"{source}-{row.index}" if source in ("wikisql", "spider") else row.index
    tables = None
    if options.tables == "synthetic":
        tables = synthetic_tables(built, f"{options.seed}:sql/{split}/{rid}")
    elif options.tables == "llm" and options.ask is not None:
        tables = llm_tables(built, options.ask)
    if options.tables != "none":
        stats["tables_valid" if tables else "tables_none"] += 1
        if tables is None and options.require_tables:
            stats["tables_dropped"] += 1
            return None
    meta = {"question": question, "context": context, "source": source}
    if tables:
        meta["tables"] = tables
    if source == "spider":
        meta["db_id"] = row.data["db_id"]
        if options.db_dir:
            meta["db_dir"] = options.db_dir
    return task_record("sql", split, fmt, rid, sql_input(question, context), answer, meta,
                       lambda: fewshot_prompt(question, context), lambda: chat_messages(question, context))


def records(rows: Iterable[Row], split: str, fmt: str = "tokens", options: SqlOptions | None = None,
            skip_bad: bool = False, stats: Stats | None = None, jobs: int = 1) -> Iterator[dict]:
    """SQL records in source order; jobs > 1 builds them in that many worker processes."""
    options = options or SqlOptions()
    stats = stats if stats is not None else Stats()
    if jobs > 1 and options.ask is None:
        return _parallel(rows, split, fmt, options, skip_bad, stats, jobs)
    return convert(rows, lambda r: make_record(r, split, fmt, options, stats), skip_bad, stats)


_worker: tuple = ()


def _init_worker(split: str, fmt: str, options: SqlOptions) -> None:
    global _worker
    _worker = (split, fmt, options)


def _work(row: Row) -> tuple[dict | None, Stats, str | None]:
    split, fmt, options = _worker
    stats = Stats()
    try:
        return make_record(row, split, fmt, options, stats), stats, None
    except BadRow as exc:
        return None, stats, f"{row.where}: {exc}"


def _parallel(rows, split, fmt, options, skip_bad, stats, jobs) -> Iterator[dict]:
    import multiprocessing

    with multiprocessing.get_context().Pool(jobs, _init_worker, (split, fmt, options)) as pool:
        for record, delta, error in pool.imap(_work, rows, chunksize=16):
            stats.update(delta)
            if error is not None:
                if not skip_bad:
                    raise InputError(error)
                stats["bad"] += 1
            elif record is not None:
                yield record


def command():
    """`ft-prep sql`, found by ft_prep.cli through the task registry: the shared options
    plus sql's own (source, test tables, processes)."""
    import click
    from ft_common.cli import CONTEXT_SETTINGS

    from ft_prep.command import emit, task_options
    from ft_prep.sql.build import SQL_TYPES

    @click.command("sql", context_settings=CONTEXT_SETTINGS)
    @click.option("--source", default=None,
                  help="wikisql, spider, all (both; the default with --data) or a sql-create-context "
                       "JSON/JSONL file; without --data: the hub's b-mc2/sql-create-context.")
    @click.option("--sql-types", type=click.Choice(SQL_TYPES), default="fix", show_default=True,
                  help="References comparing a VARCHAR column with a number: quote the number (fix), "
                       "drop the row, or keep it.")
    @click.option("--tables", "table_mode", type=click.Choice(TABLE_MODES), default="synthetic",
                  show_default=True, help="Test tables in meta: generated from the query (synthetic), "
                                          "written by a model (llm), or none.")
    @click.option("--require-tables", is_flag=True, help="Drop rows that got no valid test tables.")
    @click.option("--db-dir", type=click.Path(file_okay=False),
                  help="Spider databases (DB_ID/DB_ID.sqlite) for meta.db_dir. Default: DATA/sql/spider/database.")
    @click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, envvar="FT_JOBS", show_default=True,
                  help="Build rows in N processes (output order kept; not with --tables llm). [env FT_JOBS]")
    @click.option("--base-url", envvar="OPENAI_BASE_URL",
                  help="--tables llm: OpenAI-compatible endpoint. [env OPENAI_BASE_URL]")
    @click.option("-m", "--model", help="--tables llm: the model to ask.")
    @task_options
    def sql(source, sql_types, table_mode, require_tables, db_dir, jobs, base_url, model,
            data, split, fmt, shuffle, limit, seed, skip_bad, output, quiet):
        """SQL: question + CREATE TABLE context -> query, with test tables (b-mc2/sql-create-context).

        Built from WikiSQL and Spider as sql-create-context was (sqlglot parse, collected
        columns, inferred types, CREATE TABLE, normalised SQL); unparsable queries are
        counted and dropped. meta.tables holds synthetic rows on which the reference gives a
        non-empty, not-whole-table result; Spider rows also name their real database.

        \b
          ft-prep sql --data ../shared/data --source spider --split valid | ft-infer -m ckpt | ft-score sql
          ft-prep sql --data ../shared/data --source wikisql --limit 1000 --require-tables > sql.jsonl
        """
        if source is None:
            source = "all" if data else "hub"
        if source not in ("wikisql", "spider", "all", "hub") and not Path(source).is_file():
            raise UsageError(f"--source {source}: not wikisql, spider, all, hub or an existing file")
        if db_dir is None and data and source in ("spider", "all"):
            root = Path(data) / "sql" if (Path(data) / "sql").is_dir() else Path(data)
            if (root / "spider" / "database").is_dir():
                db_dir = str((root / "spider" / "database").resolve())
        ask = None
        if table_mode == "llm":
            if not (base_url and model):
                raise UsageError("--tables llm needs --base-url and --model")
            from ft_prep.sql.tables import openai_asker

            ask = openai_asker(base_url, model, os.environ.get("OPENAI_API_KEY"))
        options = SqlOptions(sql_types=sql_types, tables=table_mode, require_tables=require_tables,
                             seed=seed, db_dir=db_dir, ask=ask)

        def to_records(rows, stats):
            return records(rows, split, fmt, options, skip_bad=skip_bad, stats=stats, jobs=jobs)

        emit("sql", source_rows(source, data, split), to_records, shuffle, seed, limit, output, quiet)

    return sql
