"""ft-prep command line: one subcommand per registered task, each built by its loader.

A task's subcommand lives in its loader (ft_prep/<task>.py, `command()`); this file
only finds them through ft-common's task registry.
"""

from __future__ import annotations

import importlib

import click
from ft_common.cli import CONTEXT_SETTINGS, run
from ft_common.tasks import TASKS


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


for _name in TASKS:  # every task ships a loader module of the same name
    cli.add_command(importlib.import_module(f"ft_prep.{_name}").command(), _name)


def main() -> None:
    run(cli, "ft-prep")
