"""GSM8K: a grade-school maths word problem -> a worked solution ending in `#### N`."""

from __future__ import annotations

from ft_common.numbers import final_answer, normalize_number
from ft_common.tasks.base import Task

__all__ = ["TASK", "final_answer", "normalize_number"]  # the helpers stay importable from here


class Gsm8kTask(Task):
    def parse_answer(self, completion: str) -> str | None:
        return final_answer(self.answer_text(completion))


TASK = Gsm8kTask(name="gsm8k", description="grade-school maths with `#### N` answers (openai/gsm8k)",
                 meta={"answer": "the final numeric answer, normalised (tasks.gsm8k.normalize_number)"})
