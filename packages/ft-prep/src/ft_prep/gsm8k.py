"""GSM8K: question -> worked answer ending in `#### N`.

GSM8K has no validation split. `--split valid` is a stable carve-out of the train
file: a row is in it when sha256("ft-prep/gsm8k-valid" NUL question) maps below
VALID_FRACTION (10%: 724 of the 7,473 train rows); `--split train` is the rest.
Membership depends on the question text alone, never on --seed, row order or
--limit, so the two never overlap and never change between runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ft_common.numbers import final_answer

from ft_prep.common import (
    BadRow,
    Row,
    Stats,
    convert,
    field,
    stable_fraction,
    task_record,
    worked_chat,
    worked_fewshot,
)

# Sources (read by ft_prep.sources): the hub's dataset and the local files per split.
HUB = ("openai/gsm8k", "main", {"train": "train", "test": "test"})
LOCAL = {"train": ("train.jsonl",), "test": ("test.jsonl",)}
NOTES = {"valid": "GSM8K's valid split is carved out of train.jsonl"}

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


# Baseline prompts: few-shot text for completion models (`fewshot` records carry `prompt`,
# ending where the answer starts, and `stop`), messages for chat models (`chat` records).
# --- Prompts: GSM8K --------------------------------------------------------------------------------
# The 8-shot chain-of-thought exemplars of Wei et al. (2022), verbatim, each closed with GSM8K's
# own `#### N` line so that completions end in the form ft-score parses.

GSM8K_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they "
     "are done, there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there "
     "must have been 21 - 15 = 6. The answer is 6.", "6"),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.", "5"),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After "
     "eating 35, they had 74 - 35 = 39. The answer is 39.", "39"),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many "
     "lollipops did Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny "
     "20 - 12 = 8. The answer is 8.", "8"),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys "
     "does he have now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more "
     "toys. 5 + 4 = 9. The answer is 9.", "9"),
    ("There were nine computers in the server room. Five more computers were installed each day, "
     "from monday to thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = "
     "20 computers were added. 9 + 20 is 29. The answer is 29.", "29"),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. "
     "How many golf balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After "
     "losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.", "33"),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has "
     "23 - 15 dollars left. 23 - 15 is 8. The answer is 8.", "8"),
)

GSM8K_SYSTEM = ("Solve the grade-school maths problem step by step. End with a last line of the form "
                "'#### N', where N is the final numeric answer.")


def fewshot_prompt(question: str) -> tuple[str, list[str]]:
    return worked_fewshot(GSM8K_EXAMPLES, question)


def chat_messages(question: str) -> list[dict]:
    return worked_chat(GSM8K_SYSTEM, GSM8K_EXAMPLES, question)


def make_record(row: Row, split: str, fmt: str) -> dict:
    question, answer = field(row, "question").strip(), field(row, "answer").strip()
    number = final_answer(answer)
    if number is None:
        raise BadRow("answer does not end in '#### N'")
    return task_record("gsm8k", split, fmt, row.index, question, answer, {"answer": number},
                       lambda: fewshot_prompt(question), lambda: chat_messages(question))


def records(rows: Iterable[Row], split: str, fmt: str = "tokens", skip_bad: bool = False,
            stats: Stats | None = None) -> Iterator[dict]:
    return convert(rows, lambda r: make_record(r, split, fmt), skip_bad, stats if stats is not None else Stats())


def command():
    """`ft-prep gsm8k`, found by ft_prep.cli through the task registry."""
    import sys

    from ft_prep.command import task_command
    from ft_prep.sources import rows_for

    def split_rows(data, split):  # valid is carved out of train; test is GSM8K's own
        return rows_for("gsm8k", split, data) if split == "test" else carve(rows_for("gsm8k", "train", data), split)

    @task_command("gsm8k", sys.modules[__name__], split_rows)
    def gsm8k():
        """GSM8K: a maths word problem -> worked answer ending in '#### N' (openai/gsm8k).

        GSM8K has no validation split: --split valid is a fixed 10% carve-out of train
        (by a hash of the question; never overlaps --split train).

        \b
          ft-prep gsm8k --split valid | ft-infer -m ckpt | ft-score gsm8k
          ft-prep gsm8k --data ../shared/data --format fewshot --limit 100 | ft-infer -m base | ft-score gsm8k
        """

    return gsm8k
