"""GSM8K: a grade-school maths word problem -> a worked solution ending in `#### N`."""

from __future__ import annotations

import re

from ft_common.tasks.base import Task

# `#### 1,234.50` -> "1234.50"; the strict form fine-tuned models are trained to write.
_FINAL = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")


def normalize_number(text: str) -> str | None:
    """'1,234' -> '1234', '3.50' -> '3.5', '-0' -> '0'; None when it is not a number."""
    cleaned = text.replace(",", "").replace("$", "").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def final_answer(solution: str) -> str | None:
    """The normalised number after the last `####`, or None."""
    matches = _FINAL.findall(solution)
    return normalize_number(matches[-1]) if matches else None


class Gsm8kTask(Task):
    def parse_answer(self, completion: str) -> str | None:
        return final_answer(self.answer_text(completion))


TASK = Gsm8kTask(name="gsm8k", description="grade-school maths with `#### N` answers (openai/gsm8k)",
                 meta={"answer": "the final numeric answer, normalised (tasks.gsm8k.normalize_number)"})
