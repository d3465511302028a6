"""What every ft-score task subcommand shares: INPUT, -o, --summary, --limit, -q, -v
and the scoring loop. Each checker module (ft_score/<task>.py) builds its own
subcommand in `command()`; cli.py finds them through the task registry."""

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
    take,
)
from ft_common.jsonl import open_output, read_records
from ft_common.progress import Progress, log

from ft_score.base import Checker
from ft_score.summary import Summary, format_summary


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


def task_command(name: str) -> Callable[[Callable], click.Command]:
    """A task subcommand with the shared options: INPUT, -o, --summary, --limit, -q, -v."""

    def decorate(f: Callable) -> click.Command:
        f = click.option("--summary", "summary_path", type=click.Path(dir_okay=False),
                         help="Also write the summary as JSON to this file.")(f)
        for option in (common_options, limit_option(), output_option(), input_argument()):
            f = option(f)
        return click.command(name, context_settings=CONTEXT_SETTINGS)(f)

    return decorate
