"""ft-prep command line: a thin click layer over the task loaders."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import click
from ft_common.cli import (
    CONTEXT_SETTINGS,
    common_options,
    input_argument,
    limit_option,
    output_option,
    run,
    seed_option,
    take,
)
from ft_common.errors import UsageError
from ft_common.jsonl import display_name, open_output, read_records
from ft_common.progress import log

from ft_prep import generic, gsm8k, mathqa, sql, viggo
from ft_prep.common import FORMATS, SPLITS, Row, Stats, shuffled
from ft_prep.sources import rows_for
from ft_prep.sql_build import SQL_TYPES


@click.group(context_settings=CONTEXT_SETTINGS)
def cli() -> None:
    """Turn a dataset into ft task records (JSONL on stdout), one subcommand per task.

    \b
      ft-prep viggo --split valid | ft-infer -m ckpt | ft-score viggo
      ft-prep gsm8k --data ../shared/data --format fewshot --limit 100 > gsm8k-fewshot.jsonl
      ft-prep sql --data ../shared/data --source spider --split valid | ft-infer -m ckpt | ft-score sql

    Every task loads its Hugging Face hub dataset by default, or a local folder laid out
    like ../shared/data (or one file) given with --data / FT_DATA_DIR.
    """


def task_options(f: Callable) -> Callable:
    """The options every task subcommand takes."""
    for option in reversed([
        click.option("--data", envvar="FT_DATA_DIR", type=click.Path(exists=True),
                     help="Local data: a folder laid out like ../shared/data, or one file. "
                          "Default: the task's hub dataset. [env FT_DATA_DIR]"),
        click.option("--split", type=click.Choice(SPLITS), default="train", show_default=True,
                     help="Which split."),
        click.option("--format", "fmt", type=click.Choice(FORMATS), default="tokens", show_default=True,
                     help="tokens: special-token prompt/target (fine-tuning); fewshot: few-shot prompt "
                          "for a completion model; chat: messages for a chat model."),
        click.option("--shuffle", is_flag=True, help="Shuffle rows (seeded by --seed) before --limit."),
        limit_option(),
        seed_option(),
        click.option("--skip-bad", is_flag=True,
                     help="Skip bad rows (missing column, unparsable) and count them on stderr, "
                          "instead of stopping with an error naming the row."),
        output_option(),
    ]):
        f = option(f)
    return common_options(f)


def emit(name: str, rows: Iterable[Row], to_records: Callable[[Iterable[Row], Stats], Iterator[dict]],
         shuffle: bool, seed: int, limit: int | None, output: str, quiet: bool, stats: Stats | None = None) -> None:
    stats = stats if stats is not None else Stats()
    if shuffle:
        rows = shuffled(rows, seed)
    with open_output(output) as writer:
        writer.write_all(take(to_records(rows, stats), limit))
    summary = stats.summary()
    log(f"ft-prep {name}: {writer.count} records" + (f" ({summary})" if summary else ""), quiet)


def task_command(name: str, module, help_text: str) -> click.Command:
    @task_options
    def command(data, split, fmt, shuffle, limit, seed, skip_bad, output, quiet):
        rows = rows_for(name, split, data)
        to_records = functools.partial(_records, module, split, fmt, skip_bad)
        emit(name, rows, to_records, shuffle, seed, limit, output, quiet)

    command.__doc__ = help_text
    return cli.command(name, context_settings=CONTEXT_SETTINGS)(command)


def _records(module, split, fmt, skip_bad, rows, stats):
    return module.records(rows, split, fmt, skip_bad=skip_bad, stats=stats)


task_command("viggo", viggo, """ViGGO: a video-game sentence -> its meaning representation (GEM/viggo).

    \b
      ft-prep viggo --split valid | ft-infer -m ckpt | ft-score viggo
      ft-prep viggo --data ../shared/data --format chat --limit 50 | ft-infer -m gpt --engine openai
    """)


@cli.command("gsm8k", context_settings=CONTEXT_SETTINGS)
@task_options
def gsm8k_command(data, split, fmt, shuffle, limit, seed, skip_bad, output, quiet):
    """GSM8K: a maths word problem -> worked answer ending in '#### N' (openai/gsm8k).

    GSM8K has no validation split: --split valid is a fixed 10% carve-out of train
    (by a hash of the question; never overlaps --split train).

    \b
      ft-prep gsm8k --split valid | ft-infer -m ckpt | ft-score gsm8k
      ft-prep gsm8k --data ../shared/data --format fewshot --limit 100 | ft-infer -m base | ft-score gsm8k
    """
    rows = rows_for("gsm8k", split, data) if split == "test" else gsm8k.carve(rows_for("gsm8k", "train", data), split)
    emit("gsm8k", rows, functools.partial(_records, gsm8k, split, fmt, skip_bad), shuffle, seed, limit, output, quiet)


task_command("mathqa", mathqa, """MathQA: problem + options -> rationale, then '#### <letter>' (allenai/math_qa).

    The target has GSM8K's shape, for the two-stage recipe (MathQA first, then GSM8K).
    The local copy has dev (--split valid) and test only: its official train.json is missing.

    \b
      ft-prep mathqa --split train > mathqa.jsonl && ft-prep gsm8k > gsm8k.jsonl
      ft-prep mathqa --data ../shared/data --split valid | ft-infer -m ckpt | ft-score mathqa
    """)


@cli.command("sql", context_settings=CONTEXT_SETTINGS)
@click.option("--source", default=None,
              help="wikisql, spider, all (both; the default with --data) or a sql-create-context "
                   "JSON/JSONL file; without --data: the hub's b-mc2/sql-create-context.")
@click.option("--sql-types", type=click.Choice(SQL_TYPES), default="fix", show_default=True,
              help="References comparing a VARCHAR column with a number: quote the number (fix), "
                   "drop the row, or keep it.")
@click.option("--tables", "table_mode", type=click.Choice(sql.TABLE_MODES), default="synthetic",
              show_default=True, help="Test tables in meta: generated from the query (synthetic), "
                                      "written by a model (llm), or none.")
@click.option("--require-tables", is_flag=True, help="Drop rows that got no valid test tables.")
@click.option("--db-dir", type=click.Path(file_okay=False),
              help="Spider databases (DB_ID/DB_ID.sqlite) for meta.db_dir. Default: DATA/sql/spider/database.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, envvar="FT_JOBS", show_default=True,
              help="Build rows in N processes (output order kept; not with --tables llm). [env FT_JOBS]")
@click.option("--base-url", envvar="OPENAI_BASE_URL", help="--tables llm: OpenAI-compatible endpoint. [env OPENAI_BASE_URL]")
@click.option("-m", "--model", envvar="FT_MODEL", help="--tables llm: the model to ask. [env FT_MODEL]")
@task_options
def sql_command(source, sql_types, table_mode, require_tables, db_dir, jobs, base_url, model,
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
        from ft_prep.sql_tables import openai_asker

        ask = openai_asker(base_url, model, os.environ.get("OPENAI_API_KEY"))
    options = sql.SqlOptions(sql_types=sql_types, tables=table_mode, require_tables=require_tables,
                             seed=seed, db_dir=db_dir, ask=ask)
    rows = sql.source_rows(source, data, split)

    def to_records(rows, stats):
        return sql.records(rows, split, fmt, options, skip_bad=skip_bad, stats=stats, jobs=jobs)

    emit("sql", rows, to_records, shuffle, seed, limit, output, quiet)


@cli.command("generic", context_settings=CONTEXT_SETTINGS)
@input_argument()
@click.option("--special-tokens", default=",".join(generic.SPECIAL_TOKENS), show_default=True,
              help="4 comma-separated tokens: question start, question end, answer start, answer end "
                   "(the last is the stop token); '' for none.")
@click.option("--split", type=click.Choice(SPLITS), default="train", show_default=True,
              help="Split name for ids of records that have none.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="tokens", show_default=True,
              help="tokens: special-token layout; fewshot: the input as the prompt; chat: one user message.")
@click.option("--skip-bad", is_flag=True, help="Skip records without prompt/input and count them on stderr.")
@limit_option()
@output_option()
@common_options
def generic_command(input, special_tokens, split, fmt, skip_bad, limit, output, quiet):
    """Your own task: JSONL with prompt/target (or input/output) -> ft records.

    Every other key of your records passes through untouched.

    \b
      jq -c '{input: .text, output: .label}' mine.jsonl | ft-prep generic > train.jsonl
      ft-prep generic valid.jsonl | ft-infer -m ckpt | ft-score generic
    """
    tokens = generic.parse_tokens(special_tokens)
    name = display_name(input)
    rows = (Row(i, record, f"{name} record {i + 1}") for i, record in enumerate(read_records(input)))

    def to_records(rows, stats):
        return generic.records(rows, split, fmt, tokens, skip_bad=skip_bad, stats=stats)

    stats = Stats()
    with open_output(output) as writer:
        writer.write_all(take(to_records(rows, stats), limit))
    log(f"ft-prep generic: {writer.count} records" + (f" ({stats.summary()})" if stats else ""), quiet)


def main() -> None:
    run(cli, "ft-prep")
