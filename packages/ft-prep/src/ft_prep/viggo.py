"""ViGGO: sentence (`ref`) -> meaning representation (`mr`).

Local CSVs have columns `mr,ref`; the hub's GEM/viggo has `meaning_representation,target`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ft_prep import fewshot
from ft_prep.common import BadRow, Row, Stats, convert, field, task_record

# (input column, output column) pairs, local first, then the hub's names.
COLUMNS = (("ref", "mr"), ("target", "meaning_representation"))


def fields(row: Row) -> tuple[str, str]:
    """(sentence, mr) of a row in either column layout."""
    for inp, out in COLUMNS:
        if inp in row.data or out in row.data:
            sentence, mr = field(row, inp).strip(), field(row, out).strip()
            if not sentence or not mr:
                raise BadRow(f"empty {inp if not sentence else out!r}")
            return sentence, mr
    raise BadRow("missing column 'mr' (expected columns mr,ref)")


def make_record(row: Row, split: str, fmt: str) -> dict:
    sentence, mr = fields(row)
    return task_record("viggo", split, fmt, row.index, sentence, mr, {},
                       lambda: fewshot.viggo_fewshot(sentence), lambda: fewshot.viggo_chat(sentence))


def records(rows: Iterable[Row], split: str, fmt: str = "tokens", skip_bad: bool = False,
            stats: Stats | None = None) -> Iterator[dict]:
    return convert(rows, lambda r: make_record(r, split, fmt), skip_bad, stats if stats is not None else Stats())
