"""GSM8K checker: the final number, by the strict, flexible or LLM extractor.

- strict: the number after the last `####` (what fine-tuned models are trained to write);
- flexible: the last number in the text, with thousands commas, currency signs,
  signs and decimals normalised (`$1,234.50` -> `1234.5`);
- llm: the case study's extractor for free-form answers: a model reads the
  solution and calls a `report_answer` tool with an integer (`ft_score.llm`).

The strict and flexible answers are always recorded, so the summary reports
how often the extractors agree.
"""

from __future__ import annotations

import math
import re

from ft_common.errors import InputError
from ft_common.records import record_id
from ft_common.tasks.gsm8k import final_answer, normalize_number

from ft_score.base import Checker, meta_of

EXTRACTORS = ("strict", "flexible", "llm")

# A number not glued to a word or another number: optional sign and currency, thousands
# commas, decimals. The sign may come before or after the currency sign ("-$5", "$-5").
_NUMBER = re.compile(
    r"(?<![\w.])([-\u2212])?\s?[$\u20ac\u00a3]?\s?([-\u2212])?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
)


def flexible_answer(text: str) -> str | None:
    """The last number in the text, normalised; None when there is none."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    sign_before, sign_after, digits = found[-1]
    return normalize_number(("-" if sign_before or sign_after else "") + digits.replace(",", ""))


def strict_answer(text: str) -> str | None:
    """The number after the last `####`; None when the completion has none."""
    return final_answer(text)


def same_number(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)
    except ValueError:
        return False


def gold_answer(record: dict) -> str:
    """meta.answer, or the `#### N` of meta.reference; InputError naming the record when neither."""
    meta = meta_of(record)
    answer = meta.get("answer")
    if answer is not None:
        gold = normalize_number(str(answer))
    elif isinstance(meta.get("reference"), str):
        gold = final_answer(meta["reference"])
    else:
        raise InputError(f"record {record_id(record)}: missing meta.answer and meta.reference")
    if gold is None:
        raise InputError(f"record {record_id(record)}: meta.answer is not a number: {answer!r}")
    return gold


class Gsm8kChecker(Checker):
    task = "gsm8k"

    def __init__(self, extract: str = "strict", llm=None):
        """`llm`: an object with `extract(problem, completion) -> (answer | None, reason)` (for "llm")."""
        if extract not in EXTRACTORS:
            raise ValueError(f"extract must be one of {EXTRACTORS}")
        if extract == "llm" and llm is None:
            raise ValueError("extract='llm' needs an llm extractor (ft_score.llm.LLMExtractor)")
        self.extract, self.llm = extract, llm
        self.metrics = ("strict_correct", "flexible_correct") + (("llm_correct",) if llm else ()) + (
            "extractors_agree",)

    def check(self, record: dict, completion: str) -> dict:
        gold = gold_answer(record)
        answers = {"strict": strict_answer(completion), "flexible": flexible_answer(completion)}
        reason = None
        if self.llm is not None:
            problem = meta_of(record).get("input") or record.get("prompt") or ""
            answers["llm"], reason = self.llm.extract(problem, completion)
        answer = answers[self.extract]
        values = list(answers.values())
        score = {
            "correct": same_number(answer, gold),
            "answer": answer,
            "gold": gold,
            "extracted": answers,
            "extractors_agree": all(v == values[0] for v in values[1:]),
        }
        for name, value in answers.items():
            score[f"{name}_correct"] = same_number(value, gold)
        if answer is None:
            score.update(failure="no_answer", reason=reason or f"no answer found by the {self.extract} extractor")
        elif not score["correct"]:
            score["failure"] = "wrong_answer"
        return score
