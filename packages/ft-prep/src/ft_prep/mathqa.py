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

from ft_prep.common import (
    BadRow,
    Row,
    Stats,
    convert,
    field,
    task_record,
    worked_chat,
    worked_fewshot,
)

# Sources (read by ft_prep.sources): the hub's dataset and the local files per split.
HUB = ("allenai/math_qa", None, {"train": "train", "valid": "validation", "test": "test"})
LOCAL = {"train": ("train.json",), "valid": ("dev.json", "validation.json"), "test": ("test.json",)}
NOTES = {"train": "the local copy lacks MathQA's official train.json; use the hub (no --data) "
                  "or give a train.json with --data FILE"}

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


# Baseline prompts: few-shot text for completion models (`fewshot` records carry `prompt`,
# ending where the answer starts, and `stop`), messages for chat models (`chat` records).
# --- Prompts: MathQA -------------------------------------------------------------------------------
# No prompt in the case study (MathQA was a fine-tuning stage); the same shape as GSM8K's, with
# the options listed and the answer a letter after `####`.

MATHQA_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("a shop sells pens at $ 3 each . how much do 7 pens cost ?\n"
     "Options: a ) 18 , b ) 21 , c ) 24 , d ) 27 , e ) 30",
     "each pen costs 3 , so 7 pens cost 7 * 3 = 21 . answer : b", "b"),
    ("a train travels 120 km in 2 hours . what is its speed in km / h ?\n"
     "Options: a ) 40 , b ) 50 , c ) 60 , d ) 70 , e ) 80",
     "speed = distance / time = 120 / 2 = 60 km / h . answer : c", "c"),
)
MATHQA_SYSTEM = ("Solve the multiple-choice maths problem step by step. End with a last line of the "
                 "form '#### X', where X is the letter (a-e) of the correct option.")


def fewshot_prompt(problem: str) -> tuple[str, list[str]]:
    return worked_fewshot(MATHQA_EXAMPLES, problem)


def chat_messages(problem: str) -> list[dict]:
    return worked_chat(MATHQA_SYSTEM, MATHQA_EXAMPLES, problem)


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
                       lambda: fewshot_prompt(input_text), lambda: chat_messages(input_text))


def records(rows: Iterable[Row], split: str, fmt: str = "tokens", skip_bad: bool = False,
            stats: Stats | None = None) -> Iterator[dict]:
    return convert(rows, lambda r: make_record(r, split, fmt), skip_bad, stats if stats is not None else Stats())


def command():
    """`ft-prep mathqa`, found by ft_prep.cli through the task registry."""
    import sys

    from ft_prep.command import task_command

    @task_command("mathqa", sys.modules[__name__])
    def mathqa():
        """MathQA: problem + options -> rationale, then '#### <letter>' (allenai/math_qa).

        The target has GSM8K's shape, for the two-stage recipe (MathQA first, then GSM8K).
        The local copy has dev (--split valid) and test only: its official train.json is missing.

        \b
          ft-prep mathqa --split train > mathqa.jsonl
          ft-prep mathqa --data ../shared/data --split valid | ft-infer -m ckpt | ft-score mathqa
        """

    return mathqa
