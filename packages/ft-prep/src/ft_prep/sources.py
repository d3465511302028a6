"""Where rows come from: a local folder laid out like ../shared/data, a direct file, or the hub.

    --data DIR     DIR/TASK/<file for the split> (or DIR/<file> when DIR is the task's own folder)
    --data FILE    that file, whatever the split (CSV, JSON array, JSONL; .bz2 allowed)
    (neither)      the task's Hugging Face hub id, through `datasets` (imported lazily)

Each reader yields `Row(index, data, where)`: index is the row's position in its
source (the ROW part of record ids), `where` names file and line for errors.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from ft_common.errors import InputError, UsageError, require_module
from ft_common.jsonl import DecodedText, iter_lines_as_records

from ft_prep.common import Row

# Each task's loader (ft_prep/<task>.py) names its own sources:
#   HUB = (hub id, config, {our split: hub split})
#   LOCAL = {split: file names tried inside DATA/TASK/ (or DATA/ itself)}
#   NOTES = {split: why the split is missing from ../shared/data, for the error message}


def _loader(task: str):
    import importlib

    return importlib.import_module(f"ft_prep.{task}")  # late: loaders import this module


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
    names = getattr(_loader(task), "LOCAL", {}).get(split, ())
    for name in names:
        if (folder / name).is_file():
            return folder / name
    have = ", ".join(sorted(p.name for p in folder.iterdir() if p.is_file())) or "nothing"
    wanted = " or ".join(names) if names else f"a {split} file"
    note = getattr(_loader(task), "NOTES", {}).get(split)
    raise InputError(f"{folder}: no {split} split here (looked for {wanted}; found {have})"
                     + (f": {note}" if note else ""))


# csv's own limit (128 KiB) is smaller than a long document; this one still ends a runaway
# unquoted field (a stray quote swallowing the rest of the file) with a clear error.
CSV_FIELD_LIMIT = 64 << 20


def _open_binary(path: Path):
    # Bytes: ft-common decodes them, so a bad byte is named by line (and BOMs are dropped).
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    return open(path, "rb")


def read_file(path: str | Path) -> Iterator[Row]:
    """Rows of a CSV (header row), JSON array or JSONL file."""
    path = Path(path)
    name = str(path)
    suffixes = [s for s in path.suffixes if s != ".bz2"]
    kind = suffixes[-1] if suffixes else ""
    try:
        fh = _open_binary(path)
    except OSError as exc:
        raise InputError(f"{name}: cannot open ({exc.strerror})") from None
    with fh:
        if kind == ".csv":
            yield from _csv_rows(fh, name)
            return
        head = fh.read(4096)
        fh.seek(0)
        if head.removeprefix(codecs.BOM_UTF8).lstrip().startswith(b"["):  # a JSON array
            yield from _json_array_rows(fh.read(), name)
            return
        for index, (lineno, data) in enumerate(iter_lines_as_records(fh, name, line_numbers=True)):
            yield Row(index, data, f"{name}:{lineno}")


def _csv_rows(fh, name: str) -> Iterator[Row]:
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    stream = DecodedText(fh, encoding="utf-8-sig")  # a BOM would stick to the first column's name
    reader = csv.DictReader(stream.text)
    done = 0  # rows yielded; the one being read when an error comes is row `done`
    try:
        for data in reader:
            yield Row(done, data, f"{name}:{reader.line_num}")
            done += 1
    except UnicodeDecodeError:
        raise InputError(stream.where_not_utf8(name, reader.line_num + 1)) from None
    except csv.Error as exc:  # csv counts the line it failed in only after it
        why = f"a field is larger than {CSV_FIELD_LIMIT >> 20} MiB" if "field limit" in str(exc) else str(exc)
        raise InputError(f"{name}:{reader.line_num + 1}: row {done}: {why}") from None
    finally:
        stream.close()


def _json_array_rows(raw: bytes, name: str) -> Iterator[Row]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{name}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x})") from None
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise InputError(f"{name}: JSON nested too deeply") from None
    for i, data in enumerate(items):
        if not isinstance(data, dict):
            raise InputError(f"{name} row {i}: expected a JSON object")
        yield Row(i, data, f"{name} row {i}")


def hub_rows(task: str, split: str, load: Callable | None = None) -> Iterator[Row]:
    """Rows of the task's hub dataset for `split`; `load` defaults to datasets.load_dataset."""
    hub_id, config, splits = _loader(task).HUB
    if split not in splits:
        raise UsageError(f"{hub_id} has no {split} split on the hub (it has: {', '.join(splits)})")
    if load is None:
        load = _hub_loader(hub_id)
    hub_split = splits[split]
    dataset = load(hub_id, config, split=hub_split) if config else load(hub_id, split=hub_split)
    for i, data in enumerate(dataset):
        yield Row(i, dict(data), f"{hub_id}[{hub_split}] row {i}")


LOCAL_ALTERNATIVE = "use local data instead: --data DIR (or FT_DATA_DIR), a folder laid out like ../shared/data"


def _hub_loader(hub_id: str) -> Callable:
    """datasets.load_dataset, once the hub has answered a probe; when it cannot be reached, the
    same function reading only the local cache, or a one-line error naming --data."""
    from ft_common import hub

    reason = hub.why_not("dataset")
    if reason is not None:
        if not hub.dataset_is_cached(hub_id):
            raise hub.HubUnreachable(hub_id, "dataset", reason, LOCAL_ALTERNATIVE)
        hub.use_cache_only()
    load_dataset = require_module("datasets", "ft-prep", "hub").load_dataset
    if reason is None:
        return load_dataset

    def load_cached(*args, **kwargs):
        try:
            return load_dataset(*args, **kwargs)
        except Exception as exc:  # a partial cache: datasets wanted a file it does not have
            raise hub.HubUnreachable(hub_id, "dataset", reason, LOCAL_ALTERNATIVE) from exc

    return load_cached


def rows_for(task: str, split: str, data: str | None, load: Callable | None = None) -> Iterator[Row]:
    """The rows of `split`: from `data` (folder or file) when given, else from the hub."""
    if data:
        return read_file(local_file(data, task, split))
    return hub_rows(task, split, load)
