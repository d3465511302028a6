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
      ft-prep TASK --split valid | ft-infer -m ckpt | ft-score TASK
      ft-prep TASK --data ../shared/data --format fewshot --limit 100 > fewshot.jsonl
      ft-prep generic data.jsonl --limit 100 > records.jsonl

    `ft-prep TASK --help` shows a task's own examples and options. Every task
    loads its Hugging Face hub dataset by default, or a local folder laid out
    like ../shared/data (or one file) given with --data / FT_DATA_DIR.
    """


for _name in TASKS:  # every task ships a loader module of the same name
    cli.add_command(importlib.import_module(f"ft_prep.{_name}").command(), _name)


def main() -> None:
    run(cli, "ft-prep")
