"""MathQA: problem + options -> rationale, then `#### <letter>` (GSM8K's shape, for the two-stage recipe).

The input is the problem followed by a line `Options: a ) ... , b ) ... , ...`; the target is
the rationale (outer quotes removed) and a final line `#### c`. The local copy
(../shared/data/mathqa) has dev.json (--split valid) and test.json (--split test)
but not the official train.json; train comes from the hub (allenai/math_qa) or a
train.json you supply.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator

from ft_common.tasks.mathqa import OPTION_LETTERS

from ft_prep import fewshot
from ft_prep.common import BadRow, Row, Stats, convert, field, task_record

_OPTION = re.compile(r"(?:^|,\s*)([a-e])\s*\)\s*")


def parse_options(text: str) -> dict[str, str]:
    """'a ) 24 , b ) 120 , ...' (or its Python-list form) -> {'a': '24', 'b': '120', ...}."""
    text = text.strip()
    if text.startswith("["):
        try:
            items = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise BadRow("options is not a parsable list") from None
        text = " , ".join(str(item) for item in items)
    parts = _OPTION.split(text)
    options = {letter: value.strip().rstrip(",").strip() for letter, value in zip(parts[1::2], parts[2::2], strict=True)}
    if sorted(options) != list(OPTION_LETTERS):
        raise BadRow(f"options are not a-e: {text[:60]!r}")
    return options


def format_options(options: dict[str, str]) -> str:
    return " , ".join(f"{k} ) {v}" for k, v in options.items())


def clean_rationale(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    return text


def make_record(row: Row, split: str, fmt: str) -> dict:
    problem = field(row, "Problem").strip()
    raw = field(row, "options", (str, list))
    options = parse_options(raw if isinstance(raw, str) else repr(raw))
    correct = field(row, "correct").strip().lower()
    if correct not in options:
        raise BadRow(f"correct option {correct!r} is not one of a-e")
    rationale = clean_rationale(field(row, "Rationale"))
    input_text = f"{problem}\nOptions: {format_options(options)}"
    output = f"{rationale}\n#### {correct}"
    return task_record("mathqa", split, fmt, row.index, input_text, output,
                       {"answer": correct, "options": options},
                       lambda: fewshot.mathqa_fewshot(input_text), lambda: fewshot.mathqa_chat(input_text))


def records(rows: Iterable[Row], split: str, fmt: str = "tokens", skip_bad: bool = False,
            stats: Stats | None = None) -> Iterator[dict]:
    return convert(rows, lambda r: make_record(r, split, fmt), skip_bad, stats if stats is not None else Stats())
