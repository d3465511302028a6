"""GSM8K: a grade-school maths word problem -> a worked solution ending in `#### N`."""

from __future__ import annotations

from ft_common.numbers import final_answer
from ft_common.tasks.base import Task


class Gsm8kTask(Task):
    def parse_answer(self, completion: str) -> str | None:
        return final_answer(self.answer_text(completion))


TASK = Gsm8kTask(name="gsm8k", description="grade-school maths with `#### N` answers (openai/gsm8k)",
                 meta={"answer": "the final numeric answer, normalised (ft_common.numbers.normalize_number)"})
