"""`--resume`: skip the records whose ids an earlier, interrupted run already wrote.

The output file is appended to one flushed line at a time, so a killed run leaves every
finished record on its own line, and at most one unfinished line at the end. That last
line is either torn (cut mid-write: it is removed) or a whole record whose newline never
came (it is kept, and given its newline). Any other bad line means the file is not an
ft-infer output, and --resume stops with that line named.

Resuming by id is exact only when ids are unique, so `unique_ids` refuses an input with a
repeated id (in every run, not only with --resume: ft-score compare joins on ids too).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator

from ft_common.errors import FtError, InputError
from ft_common.jsonl import iter_lines_as_records, read_records

TAIL_BLOCK = 1 << 16


def resume_point(path: str) -> set[str]:
    """Repair the end of an interrupted output file; return the ids of its finished records."""
    if not os.path.exists(path):
        return set()
    try:
        _repair_tail(path)
    except OSError as exc:
        raise FtError(f"{path}: cannot repair for --resume ({exc.strerror})") from None
    done: set[str] = set()
    for record in read_records(path):
        if record.get("id") is not None and "completion" in record:
            done.add(str(record["id"]))
    return done


def _repair_tail(path: str) -> None:
    with open(path, "rb+") as fh:
        end = fh.seek(0, os.SEEK_END)
        start = _last_line_start(fh, end)
        if start == end:
            return  # empty, or ends with a newline: nothing in flight
        fh.seek(start)
        if _is_finished_record(fh.read(end - start)):
            fh.seek(end)
            fh.write(b"\n")
        else:
            fh.truncate(start)


def _last_line_start(fh, end: int) -> int:
    """Offset just after the file's last newline (0 when it has none)."""
    pos = end
    while pos > 0:
        step = min(TAIL_BLOCK, pos)
        fh.seek(pos - step)
        block = fh.read(step)
        cut = block.rfind(b"\n")
        if cut >= 0:
            return pos - step + cut + 1
        pos -= step
    return 0


def _is_finished_record(line: bytes) -> bool:
    try:  # ft-common's reader: what it refuses here, the read of the whole file would refuse too
        record = next(iter_lines_as_records(io.BytesIO(line), "tail"), None)
    except InputError:
        return False
    return record is not None and record.get("id") is not None and "completion" in record


def unique_ids(numbered: Iterable[tuple[int, dict]], name: str) -> Iterator[dict]:
    """The records of (line, record) pairs; a repeated id raises InputError naming both lines."""
    first_line: dict[str, int] = {}
    for lineno, record in numbered:
        rid = record.get("id")
        if rid is not None:
            key = str(rid)
            first = first_line.setdefault(key, lineno)
            if first != lineno:
                raise InputError(f"{name}:{lineno}: duplicate id {key!r} (first on line {first}); "
                                 "ft-infer needs unique ids: --resume and ft-score compare join on them")
        yield record


def skip_done(records: Iterable[dict], done: set[str]) -> Iterator[dict]:
    for record in records:
        rid = record.get("id")
        if rid is None:
            raise InputError("--resume needs an 'id' on every record; one has none")
        if str(rid) not in done:
            yield record
