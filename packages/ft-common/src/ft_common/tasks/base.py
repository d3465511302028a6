"""What a task is: its special tokens, prompt layout, stop token and answer parsing.

The case study frames every example as

    <START_Q>{input}<END_Q><START_A>{output}<END_A>

with the four markers added to the tokenizer as special tokens. The prompt is
everything up to and including <START_A>; the target is the output plus the
stop token <END_A>.
"""

from __future__ import annotations

from dataclasses import dataclass, field

START_Q, END_Q, START_A, END_A = "<START_Q>", "<END_Q>", "<START_A>", "<END_A>"
SPECIAL_TOKENS: tuple[str, ...] = (START_Q, END_Q, START_A, END_A)


def cut_at_stop(completion: str, stops: tuple[str, ...] | list[str] = (END_A,)) -> str:
    """The completion up to its first stop string (all of it when there is none)."""
    end = len(completion)
    for stop in stops:
        i = completion.find(stop)
        if i != -1:
            end = min(end, i)
    return completion[:end]


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS
    stop: tuple[str, ...] = (END_A,)
    # The layout is configurable so a generic user task can bring its own markers.
    prompt_template: str = START_Q + "{input}" + END_Q + START_A
    target_template: str = "{output}" + END_A
    # The keys ft-prep puts in a record's `meta` for this task's checker, beyond the ones every
    # task has (ft_common.records.COMMON_META): {key: meaning}. The record schema and
    # docs/architecture.md read them from here, so a new task documents its keys in one place.
    meta: dict[str, str] = field(default_factory=dict, compare=False)

    def prompt(self, input_text: str) -> str:
        return self.prompt_template.replace("{input}", input_text)

    def target(self, output_text: str) -> str:
        return self.target_template.replace("{output}", output_text)

    def answer_text(self, completion: str) -> str:
        """The answer part of a completion: cut at the stop token, outer whitespace removed."""
        return cut_at_stop(completion, self.stop).strip()

    def parse_answer(self, completion: str) -> str | None:
        """The task's canonical answer parsed out of a completion (None when there is none)."""
        text = self.answer_text(completion)
        return text or None
