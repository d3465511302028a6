"""MathQA: a multiple-choice maths problem -> a rationale ending in the chosen option.

Targets are written in GSM8K's shape, so MathQA can be the first stage of the
two-stage recipe: the rationale, then `#### <letter>`, or, in ft-prep's value form
(`--answer value`, meta.answer_kind "value"), `#### <number>`, scored as GSM8K is.
"""

from __future__ import annotations

import re

from ft_common.tasks.base import Task

OPTION_LETTERS = "abcde"
_FINAL = re.compile(r"####\s*\(?\s*([a-eA-E])\s*\)?(?![a-zA-Z])")
_ANSWER_WORD = re.compile(r"answer\s*(?:is)?\s*[:=]?\s*\(?\s*([a-eA-E])\s*\)?(?![a-z])", re.IGNORECASE)


def final_option(text: str) -> str | None:
    """The option letter after the last `####` (or, failing that, after 'answer :')."""
    for pattern in (_FINAL, _ANSWER_WORD):
        matches = pattern.findall(text)
        if matches:
            return matches[-1].lower()
    return None


class MathQATask(Task):
    def parse_answer(self, completion: str) -> str | None:
        return final_option(self.answer_text(completion))


TASK = MathQATask(name="mathqa", description="multiple-choice maths with rationales (allenai/math_qa)",
                  meta={"answer": "the correct option letter a-e (its number in the value form)",
                        "options": "{letter: option text}",
                        "letter": "value form: the correct option letter a-e",
                        "answer_kind": "value form: \"value\" (ft-prep mathqa --answer value; absent for letters)"})
