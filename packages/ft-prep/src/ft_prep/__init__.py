"""ft-prep: turn a dataset into ft task records.

One module per task (`viggo`, `gsm8k`, `mathqa`, `sql`, `generic`), each with
`records(rows, split, fmt, ...)` over `Row`s from `sources`; `sql_build` and
`sql_tables` build sql-create-context rows and their test tables; `fewshot` holds
the baseline prompts; `cli` is the thin click layer.
"""

__version__ = "0.1.0"
