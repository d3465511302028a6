"""Streaming JSONL: read records with file:line errors, write them flushed or atomically."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO

import jsonlines

from ft_common.atomic import atomic_write
from ft_common.errors import FtError, InputError

STDIO = "-"


def display_name(path: str) -> str:
    return "<stdin>" if path == STDIO else str(path)


def iter_lines_as_records(lines: Iterable[str], name: str) -> Iterator[dict]:
    """Parse each non-blank line as a JSON object; a bad one raises InputError naming name:line."""
    reader = jsonlines.Reader(lines)
    try:
        yield from reader.iter(type=dict, skip_empty=True)
    except jsonlines.InvalidLineError as exc:
        what = "expected a JSON object" if "type" in str(exc) else "not valid JSON"
        raise InputError(f"{name}:{exc.lineno}: {what}: {exc.line[:60]!r}") from None


def read_records(path: str = STDIO) -> Iterator[dict]:
    """Stream the records of a JSONL file, or of stdin for '-'."""
    name = display_name(path)
    if path == STDIO:
        yield from iter_lines_as_records(_stdin_text(), name)
        return
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{name}: cannot open ({exc.strerror})") from None
    with fh:
        try:
            yield from iter_lines_as_records(fh, name)
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}: not UTF-8 text ({exc.reason})") from None


def _stdin_text() -> IO[str]:
    # A binary-safe UTF-8 view of stdin, whatever the locale says.
    if hasattr(sys.stdin, "buffer"):
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="strict")
    return sys.stdin


def dumps(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class RecordWriter:
    """Write records one per line; flushes each line when writing to a pipe or terminal."""

    def __init__(self, fh: IO[str], flush_each: bool):
        self._fh = fh
        self._flush_each = flush_each
        self.count = 0

    def write(self, record: dict) -> None:
        self._fh.write(dumps(record) + "\n")
        if self._flush_each:
            self._fh.flush()
        self.count += 1

    def write_all(self, records: Iterable[dict]) -> int:
        for record in records:
            self.write(record)
        return self.count


@contextlib.contextmanager
def open_output(path: str = STDIO, append: bool = False) -> Iterator[RecordWriter]:
    """A RecordWriter on stdout ('-'), or on a file written atomically (or appended to)."""
    if path == STDIO:
        yield RecordWriter(sys.stdout, flush_each=True)
        sys.stdout.flush()
        return
    if append:
        try:
            fh = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise FtError(f"{path}: cannot open for appending ({exc.strerror})") from None
        with fh:
            # Appending keeps every finished line: a crash loses at most the line in flight.
            yield RecordWriter(fh, flush_each=True)
        return
    try:
        with atomic_write(path) as fh:
            yield RecordWriter(fh, flush_each=False)
    except OSError as exc:
        raise FtError(f"{path}: cannot write ({exc.strerror})") from None


def write_records(records: Iterable[dict], path: str = STDIO) -> int:
    """Write all records to `path` ('-' for stdout); return how many were written."""
    with open_output(path) as writer:
        return writer.write_all(records)
