"""GSM8K: question -> worked answer ending in `#### N`.

GSM8K has no validation split. `--split valid` is a stable carve-out of the train
file: a row is in it when sha256("ft-prep/gsm8k-valid" NUL question) maps below
VALID_FRACTION (10%: 724 of the 7,473 train rows); `--split train` is the rest.
Membership depends on the question text alone, never on --seed, row order or
--limit, so the two never overlap and never change between runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ft_common.tasks.gsm8k import final_answer

from ft_prep import fewshot
from ft_prep.common import BadRow, Row, Stats, convert, field, stable_fraction, task_record

VALID_FRACTION = 0.10
VALID_SALT = "ft-prep/gsm8k-valid"


def in_valid(question: str) -> bool:
    return stable_fraction(question.strip(), VALID_SALT) < VALID_FRACTION


def carve(rows: Iterable[Row], split: str) -> Iterator[Row]:
    """Rows of the train file that belong to `split` (train or valid) of the carve-out."""
    want_valid = split == "valid"
    for row in rows:
        question = row.data.get("question")
        # A row without a question cannot be placed; let train surface it as a bad row.
        if not isinstance(question, str):
            if not want_valid:
                yield row
            continue
        if in_valid(question) == want_valid:
            yield row


def make_record(row: Row, split: str, fmt: str) -> dict:
    question, answer = field(row, "question").strip(), field(row, "answer").strip()
    number = final_answer(answer)
    if number is None:
        raise BadRow("answer does not end in '#### N'")
    return task_record("gsm8k", split, fmt, row.index, question, answer, {"answer": number},
                       lambda: fewshot.gsm8k_fewshot(question), lambda: fewshot.gsm8k_chat(question))


def records(rows: Iterable[Row], split: str, fmt: str = "tokens", skip_bad: bool = False,
            stats: Stats | None = None) -> Iterator[dict]:
    return convert(rows, lambda r: make_record(r, split, fmt), skip_bad, stats if stats is not None else Stats())
