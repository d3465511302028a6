"""What every checker shares: reading the completion and the reference, the length flag."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ft_common.errors import InputError
from ft_common.records import record_id
from ft_common.tasks import END_A, cut_at_stop


def completion_of(record: dict) -> str:
    """The record's completion, cut at its stop string; InputError naming the record when absent."""
    completion = record.get("completion")
    if not isinstance(completion, str):
        what = "missing 'completion'" if completion is None else "'completion' is not a string"
        raise InputError(f"record {record_id(record)}: {what} (run ft-infer first)")
    return cut_at_stop(completion, record.get("stop") or (END_A,))


def meta_of(record: dict) -> dict:
    meta = record.get("meta")
    if not isinstance(meta, dict):
        raise InputError(f"record {record_id(record)}: missing 'meta' (records come from ft-prep)")
    return meta


def meta_value(record: dict, key: str, types: type | tuple[type, ...] = str) -> Any:
    """meta[key], or InputError naming the record and the key."""
    value = meta_of(record).get(key)
    if not isinstance(value, types):
        what = "missing" if value is None else f"has type {type(value).__name__}"
        raise InputError(f"record {record_id(record)}: meta.{key} {what}")
    return value


def reference_of(record: dict) -> str:
    return meta_value(record, "reference")


class Checker:
    """A task's checker: `score(record)` returns `{"correct": bool, ...details}`.

    Subclasses implement `check(record, completion)`; `metrics` names the score
    fields (booleans or numbers) the summary averages. Checkers do no I/O of their
    own (the SQL checker's sandbox runs queries; the LLM extractor calls a model).
    """

    task = ""
    metrics: tuple[str, ...] = ()

    def check(self, record: dict, completion: str) -> dict:
        raise NotImplementedError

    def score(self, record: dict) -> dict:
        score = self.check(record, completion_of(record).strip())
        # Ended at the token limit without its stop string: likely cut off mid-answer.
        score["truncated"] = record.get("finish_reason") == "length"
        return score

    # Whether a record that names another task is refused: a task checker's verdict on another
    # task's record is meaningless; generic scores anything (exact match works on every task).
    strict_task = True

    def check_task(self, record: dict) -> None:
        """Refuse a record whose `task` key names another task (records without one pass)."""
        task = record.get("task")
        if self.strict_task and isinstance(task, str) and task != self.task:
            raise InputError(f"record {record_id(record)}: task {task!r}, not {self.task!r} "
                             f"(score it with ft-score {task})")

    def score_records(self, records: Iterable[dict]) -> Iterator[dict]:
        """Each record with its `score` added (other keys untouched)."""
        for record in records:
            self.check_task(record)
            record["score"] = self.score(record)
            yield record

    @staticmethod
    def reference_failure(record: dict, reason: str) -> dict:
        return {"correct": False, "failure": "bad_reference", "reason": reason}

    def close(self) -> None:
        """Release what the checker holds (worker processes, connections)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
