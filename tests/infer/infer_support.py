"""Helpers for ft-infer's tests: ViGGO records and JSONL in and out."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ft_common.tasks import END_A

VIGGO_VALID = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "viggo" / "valid.csv"


def viggo_sentences(n: int) -> list[str]:
    with open(VIGGO_VALID, newline="", encoding="utf-8") as fh:
        return [row["ref"] for _, row in zip(range(n), csv.DictReader(fh), strict=False)]


def viggo_records(n: int, stop: list[str] | None = None) -> list[dict]:
    return [{"id": f"viggo/valid/{i}", "prompt": f"<START_Q>{s}<END_Q><START_A>", "stop": stop or [END_A],
             "meta": {"i": i}} for i, s in enumerate(viggo_sentences(n))]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
