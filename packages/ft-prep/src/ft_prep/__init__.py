"""ft-prep: turn a dataset into ft task records.

One module per registered task (ft_common.tasks.TASKS), each with
`records(rows, split, fmt, ...)` over `Row`s from `sources`, its sources, its
baseline prompts and `command()`, its subcommand; `sql_build` and `sql_tables`
build sql-create-context rows and their test tables; `command` holds what the
subcommands share; `cli` finds them through the registry.
"""

__version__ = "0.1.0"
