"""What every ft-prep task subcommand shares: its options and the write loop.

Each task module (ft_prep/<task>.py) builds its own subcommand with `task_command`
(or by hand, as generic does); cli.py finds them through the task registry.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator

import click
from ft_common.cli import (
    CONTEXT_SETTINGS,
    common_options,
    limit_option,
    output_option,
    seed_option,
    take,
)
from ft_common.jsonl import open_output
from ft_common.progress import log

from ft_prep.common import FORMATS, SPLITS, Row, Stats, shuffled
from ft_prep.sources import rows_for


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
    """Write the records of `rows` (shuffled, then cut at `limit`) and log the count."""
    stats = stats if stats is not None else Stats()
    if shuffle:
        rows = shuffled(rows, seed)
    with open_output(output) as writer:
        writer.write_all(take(to_records(rows, stats), limit))
    summary = stats.summary()
    log(f"ft-prep {name}: {writer.count} records" + (f" ({summary})" if summary else ""), quiet)


def task_command(name: str, module, run: Callable | None = None) -> Callable[[Callable], click.Command]:
    """Decorate a function whose docstring is the help into `ft-prep NAME` with the shared options.

    The default body reads the split's rows (sources.rows_for) and converts them with
    module.records; a task passes `run(data, split)` -> rows to pick rows its own way.
    """

    def decorate(doc: Callable) -> click.Command:
        @task_options
        def command(data, split, fmt, shuffle, limit, seed, skip_bad, output, quiet):
            rows = run(data, split) if run else rows_for(name, split, data)
            to_records = functools.partial(_records, module, split, fmt, skip_bad)
            emit(name, rows, to_records, shuffle, seed, limit, output, quiet)

        command.__doc__ = doc.__doc__
        return click.command(name, context_settings=CONTEXT_SETTINGS)(command)

    return decorate


def _records(module, split, fmt, skip_bad, rows, stats):
    return module.records(rows, split, fmt, skip_bad=skip_bad, stats=stats)
