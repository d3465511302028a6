"""The click layer every ft command shares: one flag vocabulary, one error style.

The options here; `run(cli, "ft-X")`, which each command's console script
calls for ft's one-line errors and exit codes, is in ft_common.runner.

Environment variables: only those that mean the same in every command and are
safe to export for a whole pipeline (FT_LIMIT, FT_SEED, FT_QUIET, FT_VERBOSE).
None names an output or a model: one exported FT_OUTPUT sent every command of
a pipe to the same file, and ft-train and ft-infer never want the same model.
The table of every variable is in the README's Conventions section.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator

import click

from ft_common.runner import run, set_verbose, usage_message, verbose  # noqa: F401 (import them from here)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def input_argument(name: str = "input") -> Callable:
    """Positional JSONL input, '-' (stdin) by default."""
    return click.argument(name, default="-", type=click.Path(dir_okay=False, allow_dash=True))


def output_option(help: str = "Write records here instead of stdout.") -> Callable:
    # No environment variable: exported for a pipeline, it would send every command to one file.
    return click.option("-o", "--output", default="-", show_default=True,
                        type=click.Path(dir_okay=False, allow_dash=True), help=help)


def model_option(required: bool = False, help: str = "Model: a local folder, a .gguf file or a hub id.") -> Callable:
    # No environment variable: each command of a pipeline wants its own model.
    return click.option("-m", "--model", required=required, help=help)


def limit_option() -> Callable:
    return click.option("--limit", type=click.IntRange(min=0), default=None, envvar="FT_LIMIT",
                        help="Process at most N records. [env FT_LIMIT]")


def seed_option(default: int = 0) -> Callable:
    return click.option("--seed", type=int, default=default, envvar="FT_SEED", show_default=True,
                        help="Random seed. [env FT_SEED]")


def quiet_option() -> Callable:
    return click.option("-q", "--quiet", is_flag=True, envvar="FT_QUIET",
                        help="No progress or summary on stderr. [env FT_QUIET]")


def verbose_option() -> Callable:
    return click.option("-v", "--verbose", is_flag=True, envvar="FT_VERBOSE", callback=set_verbose,
                        expose_value=False, is_eager=True,
                        help="Show tracebacks and debug logs. [env FT_VERBOSE]")


def common_options(f: Callable) -> Callable:
    """-q/--quiet and -v/--verbose, which every command takes."""
    return quiet_option()(verbose_option()(f))


def take(records: Iterable[dict], limit: int | None) -> Iterator[dict]:
    """The first `limit` records (all when limit is None), lazily."""
    return iter(records) if limit is None else itertools.islice(records, limit)


