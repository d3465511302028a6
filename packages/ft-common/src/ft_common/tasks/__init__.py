"""The task registry: name -> Task. Adding a task is a module here (one that defines
`TASK`), a loader in ft-prep and a checker in ft-score.

The modules are found with pkgutil, so this file names no task: a new file is
registered by being here.
"""

from __future__ import annotations

import importlib
import pkgutil

from ft_common.errors import UsageError
from ft_common.tasks.base import END_A, END_Q, SPECIAL_TOKENS, START_A, START_Q, Task, cut_at_stop


def _discover() -> dict[str, Task]:
    """Every `TASK` defined by a module of this package, by name (modules in name order)."""
    found: dict[str, Task] = {}
    for info in pkgutil.iter_modules(__path__):
        task = getattr(importlib.import_module(f"{__name__}.{info.name}"), "TASK", None)
        if isinstance(task, Task):
            found[task.name] = task
    return dict(sorted(found.items()))


TASKS: dict[str, Task] = _discover()


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UsageError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


__all__ = ["END_A", "END_Q", "SPECIAL_TOKENS", "START_A", "START_Q", "TASKS", "Task", "cut_at_stop", "get_task"]
