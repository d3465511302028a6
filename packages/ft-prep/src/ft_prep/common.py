"""What every task loader shares: rows with their origin, bad-row handling, shuffling, carve-outs.

Library code here takes and returns iterators of dicts and does no I/O of its own;
counts for the user (bad rows skipped, SQL rows dropped) go into a `Stats` counter
that the CLI prints on stderr.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ft_common.errors import InputError

SPLITS = ("train", "valid", "test")
FORMATS = ("tokens", "fewshot", "chat")


class Stats(Counter):
    """Named counts (e.g. bad=3, sql_unparsable=12) reported on stderr by the CLI."""

    def summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.items()) if v)


@dataclass(frozen=True)
class Row:
    """One source row: its position in the source (the id's ROW part), its fields, where it came from."""

    index: int
    data: dict
    where: str  # "FILE:LINE" or "FILE row N", for error messages


class BadRow(ValueError):
    """A row the loader cannot use (missing column, unparsable value)."""


def field(row: Row, name: str, types: type | tuple[type, ...] = str):
    """row.data[name], or BadRow naming the column."""
    try:
        value = row.data[name]
    except KeyError:
        raise BadRow(f"missing column {name!r}") from None
    if not isinstance(value, types):
        raise BadRow(f"column {name!r} has type {type(value).__name__}")
    return value


def convert(rows: Iterable[Row], fn: Callable[[Row], dict | None], skip_bad: bool,
            stats: Stats) -> Iterator[dict]:
    """Map fn over rows; a BadRow raises InputError naming the row, or is counted with --skip-bad.

    fn may return None to drop a row on purpose (it counts its own reason in stats).
    """
    for row in rows:
        try:
            record = fn(row)
        except BadRow as exc:
            if not skip_bad:
                raise InputError(f"{row.where}: {exc}") from None
            stats["bad"] += 1
            continue
        if record is not None:
            yield record


def shuffled(rows: Iterable[Row], seed: int) -> list[Row]:
    """All rows in a seeded, deterministic random order (ids keep their source position)."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows


def stable_fraction(key: str, salt: str) -> float:
    """A number in [0, 1) fixed by key and salt: membership tests that never change between runs."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def make_id(task: str, split: str, index: int | str) -> str:
    """A new record's stable id, TASK/SPLIT/ROW (ft_common.records.record_id only names a record
    in a message)."""
    return f"{task}/{split}/{index}"


def task_record(task_name: str, split: str, fmt: str, index: int | str, input_text: str,
                output_text: str, meta: dict, fewshot: Callable, chat: Callable) -> dict:
    """A record in one of the three formats.

    tokens:  prompt `<START_Q>{input}<END_Q><START_A>`, target `{output}<END_A>`, the task's
             special tokens and stop (fine-tuning, fine-tuned models)
    fewshot: prompt = fewshot(input) text for a completion model, its stop strings
    chat:    messages = chat(input) for a chat endpoint
    """
    from ft_common.records import new_record
    from ft_common.tasks import get_task

    task = get_task(task_name)
    meta = {"input": input_text, "reference": output_text, **meta}
    rid = make_id(task_name, split, index)
    if fmt == "tokens":
        return new_record(id=rid, task=task_name, split=split, format=fmt, meta=meta,
                          prompt=task.prompt(input_text), target=task.target(output_text),
                          stop=list(task.stop), special_tokens=list(task.special_tokens))
    if fmt == "fewshot":
        prompt, stop = fewshot()
        return new_record(id=rid, task=task_name, split=split, format=fmt, meta=meta,
                          prompt=prompt, stop=stop)
    if fmt == "chat":
        return new_record(id=rid, task=task_name, split=split, format=fmt, meta=meta, messages=chat())
    raise ValueError(f"unknown format {fmt!r}")


# Worked solutions that end in a `#### ANSWER` line (GSM8K, MathQA): the few-shot text and the chat
# turns are built from the same (question, solution, answer) examples.
WORKED_STOPS = ["\n\n", "\nQ:"]


def worked_fewshot(examples: Iterable[tuple[str, str, str]], question: str) -> tuple[str, list[str]]:
    shots = "".join(f"Q: {q}\nA: {a}\n#### {n}\n\n" for q, a, n in examples)
    return f"{shots}Q: {question}\nA:", list(WORKED_STOPS)


def worked_chat(system: str, examples: Iterable[tuple[str, str, str]], question: str) -> list[dict]:
    messages = [{"role": "system", "content": system}]
    for q, a, n in examples:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": f"{a}\n#### {n}"}]
    return messages + [{"role": "user", "content": question}]
