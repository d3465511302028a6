"""MathQA checker: the chosen option letter (after `####`, or after 'answer :'), or, for records
of ft-prep's value form (meta.answer_kind "value"), the number after the last `####`, read and
compared as GSM8K's strict extractor does (ft_common.numbers)."""

from __future__ import annotations

from ft_common.numbers import final_answer, normalize_number, same_number
from ft_common.tasks.mathqa import OPTION_LETTERS, final_option

from ft_score.base import Checker, meta_of, meta_value


class MathQAChecker(Checker):
    task = "mathqa"

    def check(self, record: dict, completion: str) -> dict:
        if meta_of(record).get("answer_kind") == "value":
            return self.check_value(record, completion)
        gold = meta_value(record, "answer").strip().lower()
        if gold not in OPTION_LETTERS:
            return self.reference_failure(record, f"meta.answer {gold!r} is not an option letter")
        answer = final_option(completion)
        score = {"correct": answer == gold, "answer": answer, "gold": gold}
        if answer is None:
            score.update(failure="no_answer", reason="no option letter after '####' or 'answer'")
        elif answer != gold:
            score["failure"] = "wrong_option"
        return score

    def check_value(self, record: dict, completion: str) -> dict:
        """A value-form record: GSM8K's strict reading (the number after the last `####`)."""
        raw = meta_value(record, "answer", (str, int, float))
        gold = normalize_number(str(raw)) if not isinstance(raw, bool) else None
        if gold is None:
            return self.reference_failure(record, f"meta.answer {raw!r} is not a number")
        answer = final_answer(completion)
        score = {"correct": same_number(answer, gold), "answer": answer, "gold": gold}
        if answer is None:
            score.update(failure="no_answer", reason="no number after '####'")
        elif not score["correct"]:
            score["failure"] = "wrong_answer"
        return score


def command():
    """`ft-score mathqa`, found by ft_score.cli through the task registry."""
    from ft_score.command import score_stream, task_command

    @task_command("mathqa")
    def mathqa(input, output, summary_path, limit, quiet):
        """Score MathQA: the chosen option letter, or the number for `ft-prep mathqa --answer value` records.

        \b
          ft-prep mathqa --split valid | ft-infer -m ckpt | ft-score mathqa --summary s.json
          ft-prep mathqa --split valid --answer value | ft-infer -m ckpt | ft-score mathqa
        """
        score_stream(MathQAChecker(), input, output, summary_path, limit, quiet)

    return mathqa
