"""Training data: read records, tokenise, lay out into batches, shard over workers.

Three layouts (`--layout`):

- pack (default): records are packed first-fit into rows of ctx_len tokens; each
  record keeps its own positions (0, 1, ...), and the model sees a block-diagonal
  causal mask (transformers derives it from the position ids when there is no
  attention mask), so records never attend to each other and no compute is
  spent on padding beyond the tail of each row.
- group: records sorted into length buckets, each batch padded to its longest.
- pad: every record padded to ctx_len (the case study's recipe, for comparison).

Labels are shifted here (labels[i] is the token to predict at position i, or
-100), and a batch lists the positions that have one, so the model computes
logits (and the loss) only there.

Every worker gets the same number of batches (ZeRO-3 ranks must run the same
number of forward passes): short shards are filled with copies of real batches
whose labels are all -100, so they add nothing to the loss.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from dataclasses import dataclass

from ft_common.errors import InputError
from ft_common.jsonl import display_name
from ft_common.records import record_id

IGNORE = -100


@dataclass
class DataFile:
    """The records of one input file, and what the manifest says about it."""

    name: str
    sha256: str
    records: list[dict]


def read_data_file(path: str) -> DataFile:
    """Read a whole JSONL file (or stdin for '-'); every record needs prompt and target.

    A malformed line or a record without a string prompt/target raises InputError
    naming file:line (and the record id).
    """
    name = display_name(path)
    try:
        if path == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as fh:
                raw = fh.read()
    except OSError as exc:
        raise InputError(f"{name}: cannot open ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text ({exc.reason})") from None
    records = []
    # split on "\n" only: str.splitlines() also breaks at U+2028 and friends, which
    # JSON strings may hold raw (GSM8K has them).
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{name}:{lineno}: not valid JSON: {line[:60]!r}") from None
        if not isinstance(record, dict):
            raise InputError(f"{name}:{lineno}: expected a JSON object: {line[:60]!r}")
        for key in ("prompt", "target"):
            if not isinstance(record.get(key), str):
                what = "missing key" if key not in record else "non-string"
                raise InputError(
                    f"{name}:{lineno}: record {record_id(record, lineno)}: {what} {key!r} "
                    "(ft-train needs prompt and target; see ft-prep)"
                )
        records.append(record)
    return DataFile(name=name, sha256=hashlib.sha256(raw).hexdigest(), records=records)


def tokenize_records(records: list[dict], tokenizer, ctx_len: int, loss_on: str) -> tuple[list[dict], int]:
    """Each record -> {"ids": [...], "labels": [...]} (labels shifted); also the truncated count."""
    prompts = tokenizer([r["prompt"] for r in records], add_special_tokens=True)["input_ids"]
    targets = tokenizer([r["target"] for r in records], add_special_tokens=False)["input_ids"]
    rows, truncated = [], 0
    for p, t in zip(prompts, targets, strict=True):
        ids = list(p) + list(t)
        learn = [loss_on == "all"] * len(p) + [True] * len(t)
        if len(ids) > ctx_len:
            truncated += 1
            ids, learn = ids[:ctx_len], learn[:ctx_len]
        labels = [ids[i + 1] if learn[i + 1] else IGNORE for i in range(len(ids) - 1)] + [IGNORE]
        rows.append({"ids": ids, "labels": labels})
    return rows, truncated


def pack(rows: list[dict], ctx_len: int) -> list[list[dict]]:
    """First-fit-decreasing packing of rows into bins of at most ctx_len tokens."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]["ids"]))
    bins: list[list[dict]] = []
    room: list[int] = []
    for i in order:
        n = len(rows[i]["ids"])
        for b, free in enumerate(room):
            if free >= n:
                bins[b].append(rows[i])
                room[b] -= n
                break
        else:
            bins.append([rows[i]])
            room.append(ctx_len - n)
    return bins


def make_batches(rows: list[dict], layout: str, batch_size: int, ctx_len: int, seed: int) -> list[list[list[dict]]]:
    """The batches of one epoch, in a seeded order: a batch is a list of sequences,
    a sequence a list of records (several when packed, one otherwise)."""
    rng = random.Random(seed)
    if layout == "pack":
        seqs = pack(rows, ctx_len)
        rng.shuffle(seqs)
    elif layout == "group":
        # Sort by length inside shuffled windows of 50 batches: batches of alike lengths, random order.
        shuffled = rows[:]
        rng.shuffle(shuffled)
        window = batch_size * 50
        seqs = []
        for s in range(0, len(shuffled), window):
            seqs += [[r] for r in sorted(shuffled[s:s + window], key=lambda r: len(r["ids"]))]
    else:
        seqs = [[r] for r in rows]
        rng.shuffle(seqs)
    batches = [seqs[i:i + batch_size] for i in range(0, len(seqs), batch_size)]
    if layout == "group":
        rng.shuffle(batches)
    return batches


def shard(batches: list, rank: int, world: int, multiple: int = 1) -> list[tuple[list, bool]]:
    """This rank's batches, as (batch, real) pairs; every rank gets the same count
    (a multiple of `multiple`), short ranks repeating batches marked real=False."""
    per_rank = -(-len(batches) // world)
    per_rank = -(-per_rank // multiple) * multiple
    mine = [(b, True) for b in batches[rank::world]]
    i = 0
    while len(mine) < per_rank:
        mine.append((batches[i % len(batches)], False))
        i += 1
    return mine


def collate(batch: list[list[dict]], layout: str, ctx_len: int, pad_id: int, real: bool = True) -> dict:
    """Tensors for one batch: input_ids, position_ids (and attention_mask for padded layouts),
    and the loss as loss_index (flat positions that have a label) and loss_labels.

    Packed rows use position ids that restart at each record and no attention
    mask, which gives each record its own causal block. Listing the loss
    positions here, on the host, lets the model compute logits only there,
    with no device-to-host sync. A batch with real=False has no loss positions.
    """
    import torch

    if layout == "pack":
        width = max(sum(len(r["ids"]) for r in seq) for seq in batch)
    elif layout == "pad":
        width = ctx_len
    else:
        width = max(len(seq[0]["ids"]) for seq in batch)
    n = len(batch)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    pos = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    index, labels = [], []
    for b, seq in enumerate(batch):
        at = 0
        for r in seq:
            k = len(r["ids"])
            ids[b, at:at + k] = torch.tensor(r["ids"])
            pos[b, at:at + k] = torch.arange(k)
            mask[b, at:at + k] = 1
            if real:
                for i, y in enumerate(r["labels"]):
                    if y != IGNORE:
                        index.append(b * width + at + i)
                        labels.append(y)
            at += k
        if layout == "pack" and at < width:
            pos[b, at:] = torch.arange(width - at)  # the padded tail is its own (unused) block
    out = {"input_ids": ids, "position_ids": pos,
           "loss_index": torch.tensor(index, dtype=torch.long), "loss_labels": torch.tensor(labels, dtype=torch.long)}
    if layout != "pack":
        out["attention_mask"] = mask
    return out


def count_tokens(rows: list[dict]) -> tuple[int, int]:
    """(all tokens, loss tokens) over the rows."""
    return sum(len(r["ids"]) for r in rows), sum(sum(1 for x in r["labels"] if x != IGNORE) for r in rows)
