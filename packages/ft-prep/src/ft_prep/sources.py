"""Where rows come from: a local folder laid out like ../shared/data, a direct file, or the hub.

    --data DIR     DIR/TASK/<file for the split> (or DIR/<file> when DIR is the task's own folder)
    --data FILE    that file, whatever the split (CSV, JSON array, JSONL; .bz2 allowed)
    (neither)      the task's Hugging Face hub id, through `datasets` (imported lazily)

Each reader yields `Row(index, data, where)`: index is the row's position in its
source (the ROW part of record ids), `where` names file and line for errors.
"""

from __future__ import annotations

import bz2
import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from ft_common.errors import InputError, UsageError, require_module

from ft_prep.common import Row

# task -> (hub id, config, {our split: hub split})
HUB: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "viggo": ("GEM/viggo", None, {"train": "train", "valid": "validation", "test": "test"}),
    "gsm8k": ("openai/gsm8k", "main", {"train": "train", "test": "test"}),
    "mathqa": ("allenai/math_qa", None, {"train": "train", "valid": "validation", "test": "test"}),
    "sql": ("b-mc2/sql-create-context", None, {"train": "train"}),
}

# task -> split -> file names tried inside DATA/TASK/ (or DATA/ itself)
LOCAL: dict[str, dict[str, tuple[str, ...]]] = {
    "viggo": {"train": ("train.csv",), "valid": ("valid.csv", "validation.csv"), "test": ("test.csv",)},
    "gsm8k": {"train": ("train.jsonl",), "test": ("test.jsonl",)},
    "mathqa": {"train": ("train.json",), "valid": ("dev.json", "validation.json"), "test": ("test.json",)},
}


# Why a split is missing from ../shared/data, for the error message.
NOTES: dict[tuple[str, str], str] = {
    ("mathqa", "train"): "the local copy lacks MathQA's official train.json; use the hub (no --data) "
                         "or give a train.json with --data FILE",
    ("gsm8k", "valid"): "GSM8K's valid split is carved out of train.jsonl",
}


def task_dir(data: Path, task: str) -> Path:
    """DATA/TASK when it exists, else DATA (the user pointed at the task's own folder)."""
    sub = data / task
    return sub if sub.is_dir() else data


def local_file(data: str | Path, task: str, split: str) -> Path:
    """The file holding `split` of `task` under `data` (or `data` itself when it is a file)."""
    data = Path(data)
    if data.is_file():
        return data
    if not data.is_dir():
        raise InputError(f"{data}: no such file or folder")
    folder = task_dir(data, task)
    names = LOCAL[task].get(split, ())
    for name in names:
        if (folder / name).is_file():
            return folder / name
    have = ", ".join(sorted(p.name for p in folder.iterdir() if p.is_file())) or "nothing"
    wanted = " or ".join(names) if names else f"a {split} file"
    note = NOTES.get((task, split))
    raise InputError(f"{folder}: no {split} split here (looked for {wanted}; found {have})"
                     + (f": {note}" if note else ""))


def _open_text(path: Path):
    if path.suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_file(path: str | Path) -> Iterator[Row]:
    """Rows of a CSV (header row), JSON array or JSONL file."""
    path = Path(path)
    name = str(path)
    suffixes = [s for s in path.suffixes if s != ".bz2"]
    kind = suffixes[-1] if suffixes else ""
    try:
        fh = _open_text(path)
    except OSError as exc:
        raise InputError(f"{name}: cannot open ({exc.strerror})") from None
    with fh:
        if kind == ".csv":
            reader = csv.DictReader(fh)
            for i, data in enumerate(reader):
                yield Row(i, data, f"{name}:{reader.line_num}")
            return
        first = fh.read(1)
        while first and first.isspace():
            first = fh.read(1)
        if first == "[":  # a JSON array
            try:
                items = json.loads(first + fh.read())
            except json.JSONDecodeError as exc:
                raise InputError(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
            for i, data in enumerate(items):
                if not isinstance(data, dict):
                    raise InputError(f"{name} row {i}: expected a JSON object")
                yield Row(i, data, f"{name} row {i}")
            return
        yield from _jsonl_rows(first, fh, name)


def _jsonl_rows(first: str, fh, name: str) -> Iterator[Row]:
    index = 0
    for lineno, line in enumerate(_prepend(first, fh), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{name}:{lineno}: not valid JSON: {line[:60]!r}") from None
        if not isinstance(data, dict):
            raise InputError(f"{name}:{lineno}: expected a JSON object")
        yield Row(index, data, f"{name}:{lineno}")
        index += 1


def _prepend(first: str, fh) -> Iterator[str]:
    rest = fh.readline()
    yield first + rest
    yield from fh


def hub_rows(task: str, split: str, load: Callable | None = None) -> Iterator[Row]:
    """Rows of the task's hub dataset for `split`; `load` defaults to datasets.load_dataset."""
    hub_id, config, splits = HUB[task]
    if split not in splits:
        raise UsageError(f"{hub_id} has no {split} split on the hub (it has: {', '.join(splits)})")
    if load is None:
        load = require_module("datasets", "ft-prep", "hub").load_dataset
    hub_split = splits[split]
    dataset = load(hub_id, config, split=hub_split) if config else load(hub_id, split=hub_split)
    for i, data in enumerate(dataset):
        yield Row(i, dict(data), f"{hub_id}[{hub_split}] row {i}")


def rows_for(task: str, split: str, data: str | None, load: Callable | None = None) -> Iterator[Row]:
    """The rows of `split`: from `data` (folder or file) when given, else from the hub."""
    if data:
        return read_file(local_file(data, task, split))
    return hub_rows(task, split, load)
