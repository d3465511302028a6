"""Tokenised data kept between runs: FT_CACHE/tokens/KEY/ (rows.json and the tokenizer as the run
saves it). A run on the same records, with the same tokenizer files, special tokens, context
length and loss mask finds them there and skips loading the tokenizer, checking every record's
tokens and tokenising (`ft-train --dry-run` on the CPU machine, SmolLM2, 20,000 SQL records:
8.4 s -> 5.4 s from the command to its plan).

KEY is a sha256 of all of that, so an edit to any input is a miss, never a stale hit. The entry is
JSON and plain tokenizer files, written to a temporary folder and renamed whole, so a run killed
while writing leaves no entry; one that does not read back as well-formed rows of ids below its
vocabulary size counts as a miss (the run tokenises again and writes it anew).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ft_common.models import cache_root, file_sha256

from ft_train.data import IGNORE, DataFile

VERSION = 1  # of the entry's layout and of what tokenize_records makes: a change is a new key
KEEP = 16  # entries kept, the most recently used (20,000 SQL records take 19 MB)
# A tokenizer's own files in a model folder (transformers' names); weights and configs are not read.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja", "chat_template.json")


@dataclass(frozen=True)
class Tokenised:
    """What prepare needs from the tokenizer: the rows, the truncation counts, the vocabulary size
    after the special tokens, the stop token's id. The tokenizer itself is in `tokenizer_dir`."""

    train_rows: list[dict]
    truncated: int
    valid_rows: list[dict]
    valid_truncated: int
    vocab_size: int
    stop_id: int | None


def key(model_dir: str, train: DataFile, valid: DataFile, special: list[str], stop: str | None,
        ctx_len: int, loss_on: str, held_out: tuple | None) -> str:
    """The entry's name. `held_out`: (seed, fraction) when the validation records were cut from
    the training file (its sha256 is then the training file's)."""
    folder = Path(model_dir)
    files = {name: file_sha256(folder / name) for name in TOKENIZER_FILES if (folder / name).is_file()}
    what = {"version": VERSION, "tokenizer": files, "train": [train.sha256, len(train.records)],
            "valid": [valid.sha256, len(valid.records)], "held_out": held_out, "special": special,
            "stop": stop, "ctx_len": ctx_len, "loss_on": loss_on}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def entry(name: str) -> Path:
    return cache_root() / "tokens" / name


def load(name: str, tokenizer_dir: Path) -> Tokenised | None:
    """The entry, its tokenizer copied to `tokenizer_dir`; None when there is none or it is not
    well formed."""
    folder = entry(name)
    try:
        data = json.loads((folder / "rows.json").read_text())
        got = Tokenised(
            train_rows=_rows(data["train_rows"], data["vocab_size"]), truncated=int(data["truncated"]),
            valid_rows=_rows(data["valid_rows"], data["vocab_size"]), valid_truncated=int(data["valid_truncated"]),
            vocab_size=int(data["vocab_size"]), stop_id=None if data["stop_id"] is None else int(data["stop_id"]))
        shutil.rmtree(tokenizer_dir, ignore_errors=True)
        shutil.copytree(folder / "tokenizer", tokenizer_dir)
        os.utime(folder)  # recently used: the last to be pruned
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return got


def save(name: str, got: Tokenised, tokenizer_dir: Path) -> None:
    """Write the entry, whole or not at all; a cache that cannot be written is no error."""
    folder = entry(name)
    shutil.rmtree(folder, ignore_errors=True)  # one that did not load (else this run would not be here)
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name[:16]}.", dir=folder.parent))
        shutil.copytree(tokenizer_dir, tmp / "tokenizer")
        rows = {"train_rows": [[r["ids"], r["labels"]] for r in got.train_rows], "truncated": got.truncated,
                "valid_rows": [[r["ids"], r["labels"]] for r in got.valid_rows],
                "valid_truncated": got.valid_truncated, "vocab_size": got.vocab_size, "stop_id": got.stop_id}
        (tmp / "rows.json").write_text(json.dumps(rows, separators=(",", ":")))
        os.replace(tmp, folder)
        tmp = None
        _prune(folder.parent)
    except OSError:
        pass
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _prune(root: Path) -> None:
    """Keep the KEEP most recently used entries (a temporary folder of a run still writing is left)."""
    entries = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)


def _rows(pairs, vocab_size: int) -> list[dict]:
    """[[ids, labels], ...] back to rows, checked: ints, equal lengths, ids and labels in the vocabulary."""
    rows = []
    for ids, labels in pairs:
        if len(ids) != len(labels) or not ids:
            raise ValueError("row lengths")
        if not all(type(i) is int and 0 <= i < vocab_size for i in ids):
            raise ValueError("token id")
        if not all(type(y) is int and (y == IGNORE or 0 <= y < vocab_size) for y in labels):
            raise ValueError("label")
        rows.append({"ids": ids, "labels": labels})
    return rows
