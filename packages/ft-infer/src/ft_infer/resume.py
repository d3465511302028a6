"""`--resume`: skip the records whose ids an earlier, interrupted run already wrote."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator

from ft_common.errors import InputError


def done_ids(path: str) -> set[str]:
    """Ids of the complete records in an output file (a torn last line is ignored)."""
    if not os.path.exists(path):
        return set()
    ids: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line in flight when the run was killed
            if isinstance(record, dict) and record.get("id") is not None and "completion" in record:
                ids.add(str(record["id"]))
    return ids


def drop_torn_tail(path: str) -> None:
    """Cut a last line without its newline (a write cut short), so appending starts clean."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)


def skip_done(records: Iterable[dict], done: set[str]) -> Iterator[dict]:
    for record in records:
        rid = record.get("id")
        if rid is None:
            raise InputError("--resume needs an 'id' on every record; one has none")
        if str(rid) not in done:
            yield record
