"""ft-score command line: a thin click layer over the checkers, Summary and compare."""

from __future__ import annotations

import json
from collections.abc import Callable

import click
from ft_common.atomic import atomic_write
from ft_common.cli import (
    CONTEXT_SETTINGS,
    common_options,
    input_argument,
    limit_option,
    output_option,
    run,
    take,
    verbose_option,
)
from ft_common.errors import UsageError
from ft_common.jsonl import open_output, read_records
from ft_common.progress import Progress, log

from ft_score.base import Checker
from ft_score.compare import compare as compare_runs
from ft_score.compare import correctness, format_comparison
from ft_score.generic import METRICS, GenericChecker
from ft_score.gsm8k import EXTRACTORS, Gsm8kChecker
from ft_score.mathqa import MathQAChecker
from ft_score.sandbox import Limits
from ft_score.sql import ENGINES, SqlChecker
from ft_score.summary import Summary, format_summary
from ft_score.viggo import ViggoChecker


def score_stream(checker: Checker, input: str, output: str, summary_path: str | None,
                 limit: int | None, quiet: bool) -> dict:
    """Score every record of `input` into `output`; print and save the summary."""
    summary = Summary(checker.task, checker.metrics)
    progress = Progress(f"ft-score {checker.task}", quiet=quiet)
    with checker, open_output(output) as writer:
        for record in checker.score_records(take(read_records(input), limit)):
            writer.write(record)
            summary.add(record)
            progress.update()
    progress.close()
    result = summary.as_dict()
    if summary_path:
        with atomic_write(summary_path) as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
    log(format_summary(result), quiet)
    return result


def task_command(name: str) -> Callable:
    """A task subcommand with the shared options: INPUT, -o, --summary, --limit, -q, -v."""

    def decorate(f: Callable) -> Callable:
        f = click.option("--summary", "summary_path", type=click.Path(dir_okay=False),
                         help="Also write the summary as JSON to this file.")(f)
        for option in (common_options, limit_option(), output_option(), input_argument()):
            f = option(f)
        return cli.command(name, context_settings=CONTEXT_SETTINGS)(f)

    return decorate


@click.group(context_settings=CONTEXT_SETTINGS)
@verbose_option()
def cli() -> None:
    """Score completions against the task's references and summarise the run.

    Each TASK subcommand reads records (from ft-prep, with ft-infer's
    `completion`), writes each back with a `score` object, and prints a
    summary (accuracy with a 95% CI, sub-metrics, failure classes, tokens) on
    stderr.

    \b
      ft-prep viggo --split valid | ft-infer -m ckpt | ft-score viggo --summary s.json
      ft-score compare tuned.jsonl baseline.jsonl
    """


@task_command("viggo")
@click.option("--extract", type=click.Choice(["strict", "first"]), default="strict", show_default=True,
              help="strict: the completion must be one MR (fine-tuned models); first: the first MR "
                   "in the completion (prompted baselines that add text around it).")
def viggo(input, output, summary_path, limit, quiet, extract):
    """Score ViGGO meaning representations: function, attribute set, attribute order.

    \b
      ft-prep viggo --split valid | ft-infer -m ckpt | ft-score viggo --summary s.json
    """
    score_stream(ViggoChecker(extract), input, output, summary_path, limit, quiet)


@task_command("sql")
@click.option("--lowercase", is_flag=True, help="Lower-case both queries (and in-record table values) first, as the case study did.")
@click.option("--engine", type=click.Choice(ENGINES), default="sqlite", show_default=True,
              help="Run in-record tables in SQLite (in memory) or sqlglot's Python executor.")
@click.option("--timeout", type=click.FloatRange(min=0.01), default=2.0, show_default=True,
              help="Seconds per query.")
@click.option("--max-rows", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Result rows per query; more is an execution error.")
@click.option("--db-dir", type=click.Path(file_okay=False), default=None,
              help="Folder of DB_ID/DB_ID.sqlite databases (overrides meta.db_dir).")
def sql(input, output, summary_path, limit, quiet, lowercase, engine, timeout, max_rows, db_dir):
    """Score SQL by executing it in a sandbox, plus exact match and AST equivalence.

    \b
      ft-prep sql --split valid | ft-infer -m ckpt | ft-score sql --summary s.json
    """
    checker = SqlChecker(lowercase=lowercase, engine=engine, db_dir=db_dir,
                         limits=Limits(timeout=timeout, max_rows=max_rows))
    score_stream(checker, input, output, summary_path, limit, quiet)


@task_command("gsm8k")
@click.option("--extract", type=click.Choice(EXTRACTORS), default="strict", show_default=True,
              help="strict: `#### N`; flexible: the last number; llm: a model reads it out.")
@click.option("--base-url", envvar="OPENAI_BASE_URL", default=None,
              help="OpenAI-compatible endpoint for --extract llm. [env OPENAI_BASE_URL]")
@click.option("--model", "llm_model", default=None, help="Model for --extract llm (key: OPENAI_API_KEY).")
def gsm8k(input, output, summary_path, limit, quiet, extract, base_url, llm_model):
    """Score GSM8K final answers (strict, flexible or LLM extraction).

    \b
      ft-prep gsm8k --split valid | ft-infer -m ckpt | ft-score gsm8k --extract flexible
    """
    llm = None
    if extract == "llm":
        if not llm_model:
            raise UsageError("--extract llm needs --model")
        from ft_score.llm import LLMExtractor

        llm = LLMExtractor(llm_model, base_url=base_url)
    score_stream(Gsm8kChecker(extract, llm), input, output, summary_path, limit, quiet)


@task_command("mathqa")
def mathqa(input, output, summary_path, limit, quiet):
    """Score MathQA: the chosen option letter.

    \b
      ft-prep mathqa --split valid | ft-infer -m ckpt | ft-score mathqa --summary s.json
    """
    score_stream(MathQAChecker(), input, output, summary_path, limit, quiet)


@task_command("generic")
@click.option("--metric", type=click.Choice(METRICS), default="exact", show_default=True,
              help="Which metric decides `correct` (all that apply are reported).")
def generic(input, output, summary_path, limit, quiet, metric):
    """Score your own task: exact, normalised, JSON-valid + keys, or class labels.

    \b
      ft-prep generic data.jsonl | ft-infer -m ckpt | ft-score generic --metric label
    """
    score_stream(GenericChecker(metric), input, output, summary_path, limit, quiet)


@cli.command("compare", context_settings=CONTEXT_SETTINGS)
@click.argument("run_a", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("run_b", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@common_options
def compare(run_a, run_b, as_json, quiet):
    """Compare two scored runs on their shared ids: wins, losses, McNemar's exact p.

    \b
      ft-score viggo tuned.jsonl -o a.jsonl && ft-score viggo base.jsonl -o b.jsonl
      ft-score compare a.jsonl b.jsonl --json | jq .mcnemar_p
    """
    if run_a == "-" and run_b == "-":
        raise UsageError("only one of the runs can be stdin")
    result = compare_runs(correctness(read_records(run_a), run_a),
                          correctness(read_records(run_b), run_b), names=(run_a, run_b))
    click.echo(json.dumps(result) if as_json else format_comparison(result))


def main() -> None:
    run(cli, "ft-score")
