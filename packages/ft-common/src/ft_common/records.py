"""The ft record: one JSON object per line, the unit every command reads and writes.

A command reads the keys it needs, adds its own and passes every other key
through untouched. KEYS below is the schema: who writes each key and who reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ft_common.errors import InputError

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Key:
    name: str
    type: str
    written_by: str
    read_by: str
    doc: str


KEYS: tuple[Key, ...] = (
    Key("ft_schema", "int", "ft-prep", "all", "record schema version (SCHEMA_VERSION)"),
    Key("id", "str", "ft-prep", "all", "stable id: TASK/SPLIT/ROW (resume and compare join on it)"),
    Key("task", "str", "ft-prep", "ft-score", "task name (one of ft_common.tasks.TASKS); a task's checker refuses "
        "another task's record (generic scores any)"),
    Key("split", "str", "ft-prep", "-", "train, valid or test"),
    Key("format", "str", "ft-prep", "ft-infer", "tokens, fewshot or chat"),
    Key("prompt", "str", "ft-prep", "ft-train, ft-infer", "model input text (tokens/fewshot formats)"),
    Key("target", "str", "ft-prep", "ft-train", "training continuation, ending in the stop token"),
    Key("messages", "list", "ft-prep", "ft-infer", "chat messages [{role, content}] (chat format)"),
    Key("stop", "list[str]", "ft-prep", "ft-infer", "stop strings: generation ends at the first"),
    Key("special_tokens", "list[str]", "ft-prep", "ft-train", "tokens ft-train adds to the tokenizer"),
    Key("meta", "dict", "ft-prep", "ft-score", "what the checker needs: reference answer, SQL tables, ..."),
    Key("completion", "str", "ft-infer", "ft-score", "generated text, stop string removed"),
    Key("finish_reason", "str", "ft-infer", "ft-score", "stop (hit a stop string/eos) or length"),
    Key("model", "str", "ft-infer", "-", "model that generated the completion"),
    Key("prompt_tokens", "int", "ft-infer", "ft-score", "tokens in the prompt"),
    Key("completion_tokens", "int", "ft-infer", "ft-score", "tokens generated"),
    Key("score", "dict", "ft-score", "ft-score compare", "{correct: bool, ...checker details}"),
)

# What ft-prep puts in `meta` for every task; each task declares its own keys on its
# definition (Task.meta, ft_common.tasks), so this file names no task.
COMMON_META: dict[str, str] = {
    "input": "the raw input text (sentence, question, problem)",
    "reference": "the reference output, without the stop token",
}


def meta_keys() -> dict[str, dict[str, str]]:
    """The `meta` schema: {"all": COMMON_META, TASK: that task's own keys, ...} from the registry."""
    from ft_common.tasks import TASKS  # here, not at the top: task modules may import this one

    return {"all": dict(COMMON_META), **{name: dict(task.meta) for name, task in TASKS.items() if task.meta}}


def record_id(record: dict, index: int | None = None) -> str:
    """The record's id for messages, or its position when it has none."""
    rid = record.get("id")
    if rid is not None:
        return str(rid)
    return f"#{index}" if index is not None else "<no id>"


def require(record: dict, key: str, types: type | tuple[type, ...] = str) -> Any:
    """Return record[key], or raise InputError naming the record and the key."""
    try:
        value = record[key]
    except KeyError:
        raise InputError(f"record {record_id(record)}: missing key {key!r}") from None
    if not isinstance(value, types):
        raise InputError(
            f"record {record_id(record)}: key {key!r} has type {type(value).__name__}"
        )
    return value


def new_record(
    *,
    id: str,
    task: str,
    split: str,
    format: str,
    meta: dict,
    prompt: str | None = None,
    target: str | None = None,
    messages: list[dict] | None = None,
    stop: list[str] | None = None,
    special_tokens: list[str] | None = None,
) -> dict:
    """A record as ft-prep emits it; keys that do not apply are left out."""
    record: dict[str, Any] = {"ft_schema": SCHEMA_VERSION, "id": id, "task": task, "split": split, "format": format}
    if prompt is not None:
        record["prompt"] = prompt
    if target is not None:
        record["target"] = target
    if messages is not None:
        record["messages"] = messages
    if stop:
        record["stop"] = stop
    if special_tokens:
        record["special_tokens"] = special_tokens
    record["meta"] = meta
    return record
