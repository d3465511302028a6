"""MathQA: a multiple-choice maths problem -> its rationale, then `#### <answer>` (GSM8K's shape).

Two answer forms (`ft-prep mathqa --answer`), both for the two-stage recipe (MathQA, then GSM8K):

- letter (default): the input is the problem followed by a line `Options: a ) ... , b ) ...`;
  the target is the rationale (outer quotes removed) and a final line `#### c`.
- value: the input is the problem alone; the target is the rationale without its closing
  "answer : c" clause and a final line `#### 625`, the number the correct option holds. A
  letter-trained first stage teaches GSM8K's second stage to answer with a letter; this form
  teaches GSM8K's own output. An option without exactly one plain number (a fraction `31 / 36`,
  a ratio `4 : 5`, `4 π`, `750 cm 2`, "none") has no single value: its row is skipped and
  counted (`skipped_no_single_number` in the end-of-run summary).

The local copy (../shared/data/mathqa) has dev.json (--split valid) and test.json (--split test)
but not the official train.json; train comes from the hub (allenai/math_qa) or a train.json you
supply.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator

from ft_common.numbers import normalize_number
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

ANSWER_KINDS = ("letter", "value")
NO_SINGLE_NUMBER = "skipped_no_single_number"  # the Stats key of rows --answer value skips

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


# --- The value form ----------------------------------------------------------------------------
# An option's text as tokens: ASCII numbers (thousands commas, decimals), words (units, "rs"),
# and the few symbols units and signs use; anything else (/ : ^ π √ =, other scripts) is not a plain value.
_TOKEN = re.compile(r"\s*(?:(?P<num>[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
                    r"|(?P<word>[a-z]+)|(?P<sign>[-\u2013\u2212])|(?P<sym>[$%\u00b0\u00a3\u20ac\u20b9])|(?P<dot>\.)"
                    r"|(?P<other>\S))")
# Words that change what the number means (a multiplier, a sign, a constant, a second answer).
_NOT_UNITS = frozenset("pi sqrt root lakh lakhs crore crores hundred thousand million billion "
                       "loss gain profit increase decrease less more none and or to".split())
_LETTER_UNITS = frozenset("mshd")  # metres, seconds, hours, days; another lone letter is a variable ("19 a")
_PLAIN = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
MAX_DIGITS = 15  # beyond this a float (what ft-score compares) no longer holds the number exactly


def _unit_word(tokens: list[tuple[str, str]], i: int) -> bool:
    """Whether the word at i can be a unit: not a qualifier, and a lone letter only as a known
    unit, an abbreviation ("a . m", "s . 486") or after a degree sign ("° c")."""
    word = tokens[i][1]
    if word in _NOT_UNITS:
        return False
    if len(word) > 1 or word in _LETTER_UNITS:
        return True
    after = tokens[i + 1][0] if i + 1 < len(tokens) else None
    return after == "dot" or (i > 0 and tokens[i - 1][1] == "\u00b0")


def option_value(text: str) -> str | None:
    """The one number an option holds, units stripped, normalised as GSM8K's answers are
    ('rs . 486' -> '486', '- 25' -> '-25', '1,200' -> '1200', '36.80 sec' -> '36.8');
    None when it holds no number, several, or an expression."""
    text = re.sub(r"^[a-e]\s*\)\s*", "", text.strip().lower())  # a repeated label: "a ) a ) 5"
    tokens = [(m.lastgroup, m.group(m.lastgroup)) for m in _TOKEN.finditer(text)]
    numbers = [i for i, (kind, _) in enumerate(tokens) if kind == "num"]
    if len(numbers) != 1:
        return None
    at = numbers[0]
    negative = False
    for i, (kind, _) in enumerate(tokens):
        if kind == "other" or (kind == "word" and not _unit_word(tokens, i)):
            return None
        # A sign counts only before the number with at most currency signs around it ("$ - 5");
        # after a word it is an expression ("w - 112").
        if kind == "sign":
            if i > at or negative or any(k != "sym" for k, _ in tokens[:i] + tokens[i + 1:at]):
                return None
            negative = True
        # A dot ends an abbreviation ("rs .") or the text; any other may be a spaced decimal
        # point (". 09"), so the option is not read.
        if kind == "dot" and not (i and (tokens[i - 1][0] == "word" or i == len(tokens) - 1)):
            return None
    digits = tokens[at][1].replace(",", "")
    if sum(c.isdigit() for c in digits) > MAX_DIGITS:
        return None
    value = normalize_number(("-" if negative else "") + digits)
    return value if value is not None and _PLAIN.fullmatch(value) else None


# The rationale's closing mention of the option letter: "answer : c .", "the answer is ( b )",
# "correct option : d", "e is the correct answer", "answer : a ) 11", "option b is correct".
_LEAD = r"(?:(?:so|hence|thus|therefore|and|then|the|correct|right|final|required|,)\s+)*"
_LETTER = r"\(?\s*([a-e])\s*\)?"
_VALUE = r"(?:\s*[):=]?\s*\$?\s*-?[0-9][0-9.,]*\s*(?:%|[a-z]+)?)?"  # the option's value repeated: "a ) 11"
_VERDICT = r"(?:\s+(?:is|looks)\s+(?:the\s+)?(?:correct|right)(?:\s+(?:answer|option|choice))?)?"
_ANSWER_FIRST = (r"(?:(?:answer|ans)\b\s*)+(?:(?:is|will\s+be|should\s+be|would\s+be|must\s+be)\b\s*)?"
                 r"[:=\-\s]*(?:(?:option|choice)\b\s*[:=]?\s*)?" + _LETTER + _VALUE)
_OPTION_FIRST = r"(?:option|choice)\b\s*(?:is\b\s*)?[:=]?\s*" + _LETTER + _VALUE + _VERDICT
_LETTER_FIRST = _LETTER + r"\s*is\s+(?:the\s+)?(?:correct\s+|right\s+)?(?:answer|option|choice)\b"
_ANSWER_TAIL = re.compile(rf"(?:^|(?<=[\s.,;:!])){_LEAD}(?:{_ANSWER_FIRST}|{_OPTION_FIRST}|{_LETTER_FIRST})"
                          r"[\s.!]*$", re.IGNORECASE)
# A bare letter after a number, a full stop or "hence" ("... = 68 c"): stripped only when it is
# the correct letter (in dev + test it always is).
_BARE_TAIL = re.compile(r"(?:[0-9.%)]|\b(?:hence|so|thus|imo|therefore)|,)\s*(\(?\s*([a-e])\s*\)?\s*[.!]*\s*)$")
_TAIL_WINDOW = 200  # the closing clause is short; looking only at the end keeps hostile text cheap


def strip_answer_letter(rationale: str, letter: str) -> str:
    """The rationale without a final clause naming an option letter (unchanged when there is none)."""
    cut = max(0, len(rationale) - _TAIL_WINDOW)
    end = rationale[cut:]
    match = _ANSWER_TAIL.search(end)
    if match:
        return rationale[:cut + match.start()].rstrip()
    bare = _BARE_TAIL.search(end)
    if bare and bare.group(2) == letter:
        return rationale[:cut + bare.start(1)].rstrip()
    return rationale


# Baseline prompts: few-shot text for completion models (`fewshot` records carry `prompt`,
# ending where the answer starts, and `stop`), messages for chat models (`chat` records).
# --- Prompts: MathQA -------------------------------------------------------------------------------
# No prompt in the case study (MathQA was a fine-tuning stage); the same shape as GSM8K's: the
# letter form lists the options and answers with a letter, the value form answers with the number.

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

MATHQA_VALUE_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("a shop sells pens at $ 3 each . how much do 7 pens cost ?",
     "each pen costs 3 , so 7 pens cost 7 * 3 = 21 .", "21"),
    ("a train travels 120 km in 2 hours . what is its speed in km / h ?",
     "speed = distance / time = 120 / 2 = 60 km / h .", "60"),
)
MATHQA_VALUE_SYSTEM = ("Solve the maths problem step by step. End with a last line of the form "
                       "'#### N', where N is the final numeric answer.")


def fewshot_prompt(problem: str, answer: str = "letter") -> tuple[str, list[str]]:
    return worked_fewshot(MATHQA_VALUE_EXAMPLES if answer == "value" else MATHQA_EXAMPLES, problem)


def chat_messages(problem: str, answer: str = "letter") -> list[dict]:
    if answer == "value":
        return worked_chat(MATHQA_VALUE_SYSTEM, MATHQA_VALUE_EXAMPLES, problem)
    return worked_chat(MATHQA_SYSTEM, MATHQA_EXAMPLES, problem)


def make_record(row: Row, split: str, fmt: str, answer: str = "letter", stats: Stats | None = None) -> dict | None:
    """The row's record in the `answer` form; None (counted in stats) for a value-form row whose
    correct option has no single number."""
    problem = field(row, "Problem").strip()
    raw = field(row, "options", (str, list))
    options = parse_options(raw if isinstance(raw, str) else repr(raw))
    correct = field(row, "correct").strip().lower()
    if correct not in options:
        raise BadRow(f"correct option {correct!r} is not one of a-e")
    rationale = clean_rationale(field(row, "Rationale"))
    if answer == "value":
        value = option_value(options[correct])
        if value is None:
            if stats is not None:
                stats[NO_SINGLE_NUMBER] += 1
            return None
        input_text = problem
        output = f"{strip_answer_letter(rationale, correct)}\n#### {value}"
        meta = {"answer": value, "options": options, "letter": correct, "answer_kind": "value"}
    else:
        input_text = f"{problem}\nOptions: {format_options(options)}"
        output = f"{rationale}\n#### {correct}"
        meta = {"answer": correct, "options": options}
    return task_record("mathqa", split, fmt, row.index, input_text, output, meta,
                       lambda: fewshot_prompt(input_text, answer), lambda: chat_messages(input_text, answer))


def records(rows: Iterable[Row], split: str, fmt: str = "tokens", skip_bad: bool = False,
            stats: Stats | None = None, answer: str = "letter") -> Iterator[dict]:
    if answer not in ANSWER_KINDS:
        raise ValueError(f"answer must be one of {ANSWER_KINDS}")
    stats = stats if stats is not None else Stats()
    return convert(rows, lambda r: make_record(r, split, fmt, answer, stats), skip_bad, stats)


def command():
    """`ft-prep mathqa`, found by ft_prep.cli through the task registry: the shared options plus --answer."""
    import click
    from ft_common.cli import CONTEXT_SETTINGS

    from ft_prep.command import emit, task_options
    from ft_prep.sources import rows_for

    @click.command("mathqa", context_settings=CONTEXT_SETTINGS)
    @click.option("--answer", type=click.Choice(ANSWER_KINDS), default="letter", show_default=True,
                  help="letter: options in the input, '#### <letter>'; value: the problem alone, "
                       "'#### <number>' of the correct option (GSM8K's shape; rows whose option is "
                       "not one number are skipped and counted).")
    @task_options
    def mathqa(answer, data, split, fmt, shuffle, limit, seed, skip_bad, output, quiet):
        """MathQA: problem (+ options) -> rationale, then '#### <letter>' or '#### <number>' (allenai/math_qa).

        The target has GSM8K's shape, for the two-stage recipe (MathQA first, then GSM8K);
        --answer value drops the options and ends in the correct option's number, as GSM8K does.
        The local copy has dev (--split valid) and test only: its official train.json is missing.

        \b
          ft-prep mathqa --split train > mathqa.jsonl
          ft-prep mathqa --data ../shared/data --split valid --answer value > mathqa-value.jsonl
          ft-prep mathqa --data ../shared/data --split valid | ft-infer -m ckpt | ft-score mathqa
        """

        def to_records(rows, stats):
            return records(rows, split, fmt, skip_bad=skip_bad, stats=stats, answer=answer)

        emit("mathqa", rows_for("mathqa", split, data), to_records, shuffle, seed, limit, output, quiet)

    return mathqa
