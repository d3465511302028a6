"""Tokenised data kept between runs: FT_CACHE/tokens/KEY/ (rows.json and the tokenizer as the run
saves it). A run on the same records, with the same tokenizer files, special tokens, context
length and loss mask finds them there and skips loading the tokenizer, checking every record's
tokens and tokenising (`ft-train --dry-run` on the CPU machine, SmolLM2, 20,000 SQL records:
8.4 s -> 5.4 s from the command to its plan).

KEY is a sha256 of all of that, and of the versions of the code that tokenises (transformers,
tokenizers, ft-train's tokens.py and data.py), so a change to any input is a miss, never a stale
hit. An entry is JSON and plain tokenizer files, written to a temporary folder and renamed whole;
it is used only if it reads back whole: one row per record, each of 0 to ctx_len ids and labels
inside the vocabulary, the tokenizer files with the sha256 recorded beside them. Anything else
(a damaged or hand-edited entry, one deleted while being read) is a miss: the run tokenises again
and writes the entry anew. Old entries are renamed aside before they are deleted, so a reader never
sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ft_common.models import WEIGHT_SUFFIXES, cache_root, file_sha256

from ft_train import data as data_module
from ft_train import tokens as tokens_module
from ft_train.data import IGNORE, DataFile

VERSION = 1  # of the entry's layout
KEEP = 16  # entries kept, the most recently used (20,000 SQL records take 19 MB)
STALE_S = 3600  # a temporary folder this old was left by a run that died while writing
SMALL_FILE = 64 << 20  # model files up to this size count in the key (tokenizers; other formats' weights do not)


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
    """The entry's name. Every file of the model folder but its weights counts (tokenizer files,
    and config.json, which can choose the tokenizer's class; files over SMALL_FILE are weights). `held_out`: (seed, fraction) when
    the validation records were cut from the training file (its sha256 is then the training file's)."""
    import tokenizers
    import transformers

    folder = Path(model_dir)
    files = {p.name: file_sha256(p) for p in sorted(folder.iterdir())
             if p.is_file() and p.suffix not in WEIGHT_SUFFIXES and not p.name.startswith(".")
             and p.stat().st_size <= SMALL_FILE}
    code = hashlib.sha256(Path(tokens_module.__file__).read_bytes() + Path(data_module.__file__).read_bytes())
    what = {"version": VERSION, "model_files": files, "train": [train.sha256, len(train.records)],
            "valid": [valid.sha256, len(valid.records)], "held_out": held_out, "special": special,
            "stop": stop, "ctx_len": ctx_len, "loss_on": loss_on, "code": code.hexdigest(),
            "libraries": [transformers.__version__, tokenizers.__version__]}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def entry(name: str) -> Path:
    return cache_root() / "tokens" / name


def load(name: str, tokenizer_dir: Path, n_train: int, n_valid: int, ctx_len: int) -> Tokenised | None:
    """The entry for `n_train` training and `n_valid` validation records, its tokenizer copied to
    `tokenizer_dir`; None when there is none or it does not read back whole."""
    folder = entry(name)
    try:
        got = _read(json.loads((folder / "rows.json").read_text()), n_train, n_valid, ctx_len)
        files = json.loads((folder / "files.json").read_text())
        shutil.rmtree(tokenizer_dir, ignore_errors=True)
        shutil.copytree(folder / "tokenizer", tokenizer_dir)
        if not files or _file_hashes(Path(tokenizer_dir)) != files:
            return None
    except Exception:  # noqa: BLE001 - whatever is wrong with an entry, it is a miss
        return None
    try:
        os.utime(folder)  # recently used: the last to be pruned
    except OSError:
        pass
    return got


def save(name: str, got: Tokenised, tokenizer_dir: Path) -> None:
    """Write the entry, whole or not at all; a cache that cannot be written is no error."""
    folder = entry(name)
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name[:16]}.", dir=folder.parent))
        shutil.copytree(tokenizer_dir, tmp / "tokenizer")
        files = _file_hashes(tmp / "tokenizer")
        rows = {"train_rows": [[r["ids"], r["labels"]] for r in got.train_rows], "truncated": got.truncated,
                "valid_rows": [[r["ids"], r["labels"]] for r in got.valid_rows],
                "valid_truncated": got.valid_truncated, "vocab_size": got.vocab_size, "stop_id": got.stop_id}
        (tmp / "rows.json").write_text(json.dumps(rows, separators=(",", ":")))
        (tmp / "files.json").write_text(json.dumps(files))
        _remove(folder)  # one that did not read back (else this run would not be here)
        os.replace(tmp, folder)  # fails if another run has just written it: theirs stays
        tmp = None
        _prune(folder.parent)
    except OSError:
        pass
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _file_hashes(folder: Path) -> dict:
    """{name: sha256} of a saved tokenizer's files: recorded with an entry, checked on reading it."""
    return {p.name: file_sha256(p) for p in folder.iterdir()}


def _remove(folder: Path) -> None:
    """Rename aside, then delete: a run reading it meanwhile sees all of it or none."""
    aside = folder.with_name(f".old.{uuid.uuid4().hex}")
    try:
        os.rename(folder, aside)
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _prune(root: Path) -> None:
    """Keep the KEEP most recently used entries; remove temporary folders older than STALE_S."""
    now = time.time()
    entries = []
    for p in root.iterdir():
        if not p.is_dir():
            continue
        if p.name.startswith("."):
            if now - p.stat().st_mtime > STALE_S:
                shutil.rmtree(p, ignore_errors=True)
            continue
        entries.append(p)
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        _remove(old)


def _read(data: dict, n_train: int, n_valid: int, ctx_len: int) -> Tokenised:
    """rows.json back to a Tokenised, checked; ValueError where anything is off."""
    vocab = data["vocab_size"]
    stop_id = data["stop_id"]
    counts = (data["truncated"], data["valid_truncated"])
    if not _int(vocab) or vocab < 1 or not all(_int(c) and c >= 0 for c in counts):
        raise ValueError("sizes")
    if stop_id is not None and not (_int(stop_id) and 0 <= stop_id < vocab):
        raise ValueError("stop id")
    train = _rows(data["train_rows"], vocab, ctx_len)
    valid = _rows(data["valid_rows"], vocab, ctx_len)
    if len(train) != n_train or len(valid) != n_valid or counts[0] > n_train or counts[1] > n_valid:
        raise ValueError("row counts")
    return Tokenised(train, counts[0], valid, counts[1], vocab, stop_id)


def _rows(pairs, vocab_size: int, ctx_len: int) -> list[dict]:
    """[[ids, labels], ...] back to rows: lists of ints of equal length, at most ctx_len, ids and
    labels inside the vocabulary."""
    if not isinstance(pairs, list):
        raise ValueError("rows")
    rows = []
    for ids, labels in pairs:
        if not isinstance(ids, list) or not isinstance(labels, list) or len(ids) != len(labels) or len(ids) > ctx_len:
            raise ValueError("row lengths")
        if not all(_int(i) and 0 <= i < vocab_size for i in ids):
            raise ValueError("token id")
        if not all(_int(y) and (y == IGNORE or 0 <= y < vocab_size) for y in labels):
            raise ValueError("label")
        rows.append({"ids": ids, "labels": labels})
    return rows


def _int(value) -> bool:
    return type(value) is int
