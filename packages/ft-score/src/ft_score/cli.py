"""ft-score command line: a subcommand per registered task (each built by its checker
module, ft_score/<task>.py `command()`), plus compare and report."""

from __future__ import annotations

import importlib
import json

import click
from ft_common.cli import CONTEXT_SETTINGS, common_options, output_option, run, verbose_option
from ft_common.tasks import TASKS

from ft_score import report as report_lib
from ft_score.command import score_stream  # noqa: F401 (lived here: still importable)
from ft_score.compare import compare_files, format_comparison


@click.group(context_settings=CONTEXT_SETTINGS)
@verbose_option()
def cli() -> None:
    """Score completions against the task's references and summarise the run.

    Each TASK subcommand reads records (from ft-prep, with ft-infer's
    `completion`), writes each back with a `score` object, and prints a
    summary (accuracy with a 95% CI, sub-metrics, failure classes, tokens) on
    stderr.

    \b
      ft-prep TASK --split valid | ft-infer -m ckpt | ft-score TASK --summary s.json
      ft-score compare tuned.jsonl baseline.jsonl
    """


for _name in TASKS:  # every task ships a checker module of the same name
    cli.add_command(importlib.import_module(f"ft_score.{_name}").command(), _name)


@cli.command("compare", context_settings=CONTEXT_SETTINGS)
@click.argument("run_a", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("run_b", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@common_options
def compare(run_a, run_b, as_json, quiet):
    """Compare two scored runs on their shared ids: wins, losses, McNemar's exact p.

    \b
      ft-score generic tuned.jsonl -o a.jsonl && ft-score generic base.jsonl -o b.jsonl
      ft-score compare a.jsonl b.jsonl --json | jq .mcnemar_p
    """
    result = compare_files(run_a, run_b)
    click.echo(json.dumps(result) if as_json else format_comparison(result))


@cli.command("report", context_settings=CONTEXT_SETTINGS)
@click.argument("runs", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@output_option("Write the Markdown tables here instead of stdout.")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a PNG bar chart of accuracy per run (needs ft-score[report]).")
@click.option("--label", "labels", multiple=True, metavar="RUN=MODEL|METHOD",
              help="Name a run's model and method in the table (repeatable); RUN is the run's path "
                   "as given, or its file name without .scored.jsonl / .summary.json.")
@click.option("--against", multiple=True, metavar="RUN",
              help="Add a column to RUN's task table: each run's accuracy difference to RUN in points and "
                   "McNemar's exact p on their shared ids (repeatable; RUN as for --label, a scored JSONL).")
@click.option("--title", default=report_lib.TITLE, show_default=True, help="The chart's title.")
@common_options
def report(runs, output, chart_path, labels, against, title, quiet):
    """Markdown results tables (one per task) and a PNG chart from scored runs or summaries.

    RUNS are scored JSONL files (ft-score TASK -o) or summary JSON files
    (--summary; any path ending in .json); a fine-tune's NAME.ft-train.json
    beside a run adds its training facts. --against BASE adds a `vs BASE`
    column (points of accuracy over BASE, paired McNemar p) to BASE's table.

    \b
      ft-infer -m ckpt < valid.jsonl | ft-score generic -q | ft-score report - --chart acc.png
      ft-score report tuned.jsonl base.jsonl --label 'tuned=SmolLM2-135M|fine-tuned' -o table.md
      ft-score report tuned.jsonl base.jsonl --against base
    """
    report_lib.report(runs, labels, output, chart_path, title, quiet, against)


def main() -> None:
    run(cli, "ft-score")
