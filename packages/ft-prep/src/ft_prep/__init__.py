"""ft-prep: turn a dataset into ft task records.

One module per registered task (ft_common.tasks.TASKS), each with
`records(rows, split, fmt, ...)` over `Row`s from `sources`, its sources, its
baseline prompts and `command()`, its subcommand (a task with helpers of its own is a
folder: its loader in `__init__.py`, the helpers beside it); `command` holds what the
subcommands share; `cli` finds them through the registry.
"""

__version__ = "0.1.0"
