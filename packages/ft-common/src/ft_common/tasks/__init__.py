"""The task registry: name -> Task. Adding a task is a file here, a loader in
ft-prep and a checker in ft-score."""

from __future__ import annotations

from ft_common.errors import UsageError
from ft_common.tasks import generic, gsm8k, mathqa, sql, viggo
from ft_common.tasks.base import END_A, END_Q, SPECIAL_TOKENS, START_A, START_Q, Task, cut_at_stop

TASKS: dict[str, Task] = {m.TASK.name: m.TASK for m in (viggo, sql, gsm8k, mathqa, generic)}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UsageError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


__all__ = ["END_A", "END_Q", "SPECIAL_TOKENS", "START_A", "START_Q", "TASKS", "Task", "cut_at_stop", "get_task"]
