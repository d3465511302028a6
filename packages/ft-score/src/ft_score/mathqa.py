"""MathQA checker: the chosen option letter (after `####`, or after 'answer :')."""

from __future__ import annotations

from ft_common.tasks.mathqa import OPTION_LETTERS, final_option

from ft_score.base import Checker, meta_value


class MathQAChecker(Checker):
    task = "mathqa"

    def check(self, record: dict, completion: str) -> dict:
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


def command():
    """`ft-score mathqa`, found by ft_score.cli through the task registry."""
    from ft_score.command import score_stream, task_command

    @task_command("mathqa")
    def mathqa(input, output, summary_path, limit, quiet):
        """Score MathQA: the chosen option letter.

        \b
          ft-prep mathqa --split valid | ft-infer -m ckpt | ft-score mathqa --summary s.json
        """
        score_stream(MathQAChecker(), input, output, summary_path, limit, quiet)

    return mathqa
