"""GSM8K checker: the final number, by the strict, flexible or LLM extractor.

- strict: the number after the last `####` (what fine-tuned models are trained to write);
- flexible: the last number in the text, with thousands commas, currency signs,
  signs and decimals normalised (`$1,234.50` -> `1234.5`);
- llm: the case study's extractor for free-form answers: a model reads the
  solution and calls a `report_answer` tool with an integer (`ft_score.gsm8k_llm`);
- lm-eval-strict, lm-eval-flexible: lm-evaluation-harness's gsm8k task
  (lm_eval/tasks/gsm8k/gsm8k.yaml): its "strict-match" or "flexible-extract"
  regex filter, then its exact_match with the task's regexes_to_ignore and
  ignore_case, against the whole reference solution as gold (doc_to_target).

The strict and flexible answers are always recorded, so the summary reports
how often the extractors agree; lm-eval's two verdicts are always recorded too
(`lm_eval_strict_correct`, `lm_eval_flexible_correct`).
"""

from __future__ import annotations

import re

from ft_common.errors import InputError
from ft_common.numbers import final_answer, normalize_number, same_number
from ft_common.records import record_id

from ft_score.base import Checker, meta_of

EXTRACTORS = ("strict", "flexible", "llm", "lm-eval-strict", "lm-eval-flexible")

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


# lm-evaluation-harness, lm_eval/tasks/gsm8k/gsm8k.yaml (metadata version 3.0), verbatim.
LM_EVAL_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")  # strict-match: group_select 0, the first match
LM_EVAL_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")  # flexible-extract: group_select -1, the last
LM_EVAL_IGNORE = (",", "\\$", "(?s).*#### ", "\\.$")  # exact_match's regexes_to_ignore, in order
LM_EVAL_FALLBACK = "[invalid]"  # RegexFilter's answer when nothing matches


def lm_eval_filter(text: str, pattern: re.Pattern, group_select: int) -> str:
    """lm_eval.filters.extraction.RegexFilter on one response (take_first keeps the one)."""
    found = pattern.findall(text)
    if not found:
        return LM_EVAL_FALLBACK
    match = found[group_select]
    if isinstance(match, tuple):  # several groups: the first non-empty one
        match = next((m for m in match if m), LM_EVAL_FALLBACK)
    return match.strip()


def lm_eval_normalize(text: str) -> str:
    """What exact_match compares: regexes_to_ignore removed in order, then lower case (ignore_case)."""
    for pattern in LM_EVAL_IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()


def lm_eval_gold(record: dict) -> str:
    """gsm8k.yaml's doc_to_target, the whole solution: meta.reference, else meta.answer."""
    meta = meta_of(record)
    gold = meta.get("reference")
    if not isinstance(gold, str):
        gold = gold_answer(record)
    return gold


def lm_eval_answers(completion: str) -> dict[str, str]:
    return {"strict": lm_eval_filter(completion, LM_EVAL_STRICT, 0),
            "flexible": lm_eval_filter(completion, LM_EVAL_FLEXIBLE, -1)}


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
            raise ValueError("extract='llm' needs an llm extractor (ft_score.gsm8k_llm.LLMExtractor)")
        self.extract, self.llm = extract, llm
        self.metrics = ("strict_correct", "flexible_correct") + (("llm_correct",) if llm else ()) + (
            "extractors_agree", "lm_eval_strict_correct", "lm_eval_flexible_correct")

    def check(self, record: dict, completion: str) -> dict:
        gold = gold_answer(record)
        answers = {"strict": strict_answer(completion), "flexible": flexible_answer(completion)}
        reason = None
        if self.llm is not None:
            problem = meta_of(record).get("input") or record.get("prompt") or ""
            answers["llm"], reason = self.llm.extract(problem, completion)
        # lm-eval sees the completion as generated; ft's base strips it, which changes no match here.
        lm_eval = lm_eval_answers(completion)
        lm_gold = lm_eval_normalize(lm_eval_gold(record))
        lm_correct = {name: lm_eval_normalize(value) == lm_gold for name, value in lm_eval.items()}
        values = list(answers.values())
        if self.extract.startswith("lm-eval-"):
            name = self.extract.removeprefix("lm-eval-")
            answer = None if lm_eval[name] == LM_EVAL_FALLBACK else lm_eval[name]
            correct = lm_correct[name]
        else:
            answer = answers[self.extract]
            correct = same_number(answer, gold)
        score = {
            "correct": correct,
            "answer": answer,
            "gold": gold,
            "extracted": answers,
            "extractors_agree": all(v == values[0] for v in values[1:]),
            "lm_eval": {**lm_eval, "gold": lm_gold},
        }
        for name, value in answers.items():
            score[f"{name}_correct"] = same_number(value, gold)
        score["lm_eval_strict_correct"], score["lm_eval_flexible_correct"] = lm_correct["strict"], lm_correct["flexible"]
        if answer is None:
            score.update(failure="no_answer", reason=reason or f"no answer found by the {self.extract} extractor")
        elif not score["correct"]:
            score["failure"] = "wrong_answer"
        return score


def command():
    """`ft-score gsm8k`, found by ft_score.cli through the task registry."""
    import click
    from ft_common.errors import UsageError

    from ft_score.command import score_stream, task_command

    @task_command("gsm8k")
    @click.option("--extract", type=click.Choice(EXTRACTORS), default="strict", show_default=True,
                  help="strict: the last `#### N`; flexible: the last number; llm: a model reads it out; "
                       "lm-eval-strict / lm-eval-flexible: lm-evaluation-harness's gsm8k strict-match / "
                       "flexible-extract filter and exact_match, as it scores them.")
    @click.option("--base-url", envvar="OPENAI_BASE_URL", default=None,
                  help="OpenAI-compatible endpoint for --extract llm. [env OPENAI_BASE_URL]")
    # No FT_MODEL here: exported for ft-infer, it would name the extractor's model too.
    @click.option("-m", "--model", "llm_model", default=None, help="Model for --extract llm (key: OPENAI_API_KEY).")
    def gsm8k(input, output, summary_path, limit, quiet, extract, base_url, llm_model):
        """Score GSM8K final answers (strict, flexible, LLM or lm-evaluation-harness extraction).

        \b
          ft-prep gsm8k --split valid | ft-infer -m ckpt | ft-score gsm8k --extract flexible
          ft-score gsm8k infer.jsonl --extract lm-eval-strict -q --summary lm-eval.json > /dev/null
        """
        llm = None
        if extract == "llm":
            if not llm_model:
                raise UsageError("--extract llm needs -m/--model")
            from ft_score.gsm8k_llm import LLMExtractor

            llm = LLMExtractor(llm_model, base_url=base_url)
        score_stream(Gsm8kChecker(extract, llm), input, output, summary_path, limit, quiet)

    return gsm8k
