"""Training data: read records, tokenise, lay out into batches, shard over workers.

Four layouts (`--layout`; auto: flat on a GPU, group elsewhere, driver.layout_choice):

- flat: records laid end to end in one row per batch, about --batch-tokens real tokens of them
  and no padding between; each record keeps its own positions, and attention stays inside each
  record through variable-length flash attention given the records' boundaries
  (ft_train.flat: one fixed row width and boundary count per run, so a CUDA graph replays every
  batch; the tail past the last record is split into short pieces that attend only to themselves).
- group: records sorted into length buckets, cut into batches of about
  --batch-tokens padded tokens, right-padded to each batch's longest. Causal
  attention never looks right, so a real token never sees the padding after it:
  no attention mask is needed, and the model takes its fastest path (flash
  attention, no mask to build, no host sync). Padding is a few percent.
- pack: records are packed first-fit into rows of ctx_len tokens; each record
  keeps its own positions (0, 1, ...), and the model sees a block-diagonal
  causal mask (transformers derives it from the position ids when there is no
  attention mask), so records never attend to each other. No padding, but the
  mask costs a slower attention kernel and a host sync per step.
- pad: every record padded to ctx_len (the case study's recipe, for comparison).

A batch holds --batch-size sequences when that is given, else as many as fit
in --batch-tokens (for pack and pad: batch_tokens // ctx_len rows; for flat, real tokens).

Labels are shifted here (labels[i] is the token to predict at position i, or
-100), and a batch lists the positions that have one, so the model computes
logits (and the loss) only there.

Every worker gets the same number of batches (ZeRO-3 ranks must run the same
number of forward passes): short shards are filled with copies of real batches
whose labels are all -100, so they add nothing to the loss.
"""

from __future__ import annotations

import collections
import hashlib
import random
from dataclasses import dataclass

from ft_common.errors import InputError
from ft_common.jsonl import display_name, read_records
from ft_common.records import record_id

from ft_train.config import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS

IGNORE = -100
BATCH_LAYOUTS = ("flat", "group", "pack", "pad")  # config.LAYOUTS less auto, which the driver resolves


@dataclass
class DataFile:
    """The records of one input file, and what the manifest says about it."""

    name: str
    sha256: str
    records: list[dict]


def read_data_file(path: str) -> DataFile:
    """Read a whole JSONL file (or stdin for '-'); every record needs prompt and target.

    Lines go through ft-common's reader (bad JSON, bytes, nesting: InputError naming
    file:line); a record without a string prompt/target raises InputError naming file:line
    and the record id. The sha256 is of the bytes read, for the manifest.
    """
    name = display_name(path)
    digest = hashlib.sha256()
    records = []
    for lineno, record in read_records(path, line_numbers=True, digest=digest):
        for key in ("prompt", "target"):
            if not isinstance(record.get(key), str):
                what = "missing key" if key not in record else "non-string"
                raise InputError(
                    f"{name}:{lineno}: record {record_id(record, lineno)}: {what} {key!r} "
                    "(ft-train needs prompt and target; see ft-prep)"
                )
        records.append(record)
    return DataFile(name=name, sha256=digest.hexdigest(), records=records)


def tokenize_records(records: list[dict], tokenizer, ctx_len: int, loss_on: str,
                     pieces: tuple[list[list[int]], list[list[int]]] | None = None) -> tuple[list[dict], int]:
    """Each record -> {"ids": [...], "labels": [...]} (labels shifted); also the truncated count.
    The prompt gets the tokenizer's special tokens (a BOS, for some), the target none. `pieces`:
    the prompts' and targets' ids without special tokens, already computed (tokens.check_tokens)."""
    wrap = special_wrap(tokenizer) if pieces else None
    if wrap is None:
        prompts = tokenizer([r["prompt"] for r in records], add_special_tokens=True)["input_ids"]
    else:
        prompts = [wrap[0] + p + wrap[1] for p in pieces[0]]
    targets = pieces[1] if pieces else tokenizer([r["target"] for r in records], add_special_tokens=False)["input_ids"]
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


def special_wrap(tokenizer) -> tuple[list[int], list[int]] | None:
    """The ids the tokenizer adds before and after a text (a BOS, an EOS, or none), read off one
    probe; None when the text's own ids are not found whole inside (then tokenise again)."""
    probe = "Hello, world"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return list(full[:start]), list(full[start + len(bare):])
    return None


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


def default_batch_tokens(gpu: bool, fits=lambda tokens: True, floor: int = 512) -> int:
    """--batch-tokens when not given: config.GPU_BATCH_TOKENS on a GPU, halved while `fits(tokens)`
    says a batch would not fit (plan.memory_fits: the model's state and the batch's activations;
    large models), never below `floor`; on a CPU config.CPU_BATCH_TOKENS."""
    tokens = GPU_BATCH_TOKENS if gpu else CPU_BATCH_TOKENS
    while tokens // 2 >= floor and not fits(tokens):
        tokens //= 2
    return tokens


def real_tokens(batch: list[list[dict]], real: bool = True) -> int:
    """The tokens of a batch that are not padding (0 for a fill-in copy, real=False)."""
    return sum(len(r["ids"]) for seq in batch for r in seq) if real else 0


def tokens_per_batch(cfg) -> int:
    """The most tokens one micro-batch holds (for the memory estimate)."""
    if cfg.batch_size:
        return cfg.batch_size * cfg.ctx_len
    return max(cfg.batch_tokens, cfg.ctx_len)


def rows_per_batch(batch_size: int | None, batch_tokens: int, ctx_len: int) -> int:
    """Sequences per batch for the fixed-width layouts (pack, pad)."""
    return batch_size or max(1, batch_tokens // ctx_len)


def make_batches(rows: list[dict], layout: str, batch_size: int | None, batch_tokens: int, ctx_len: int,
                 seed: int, multiple: int = 1) -> list[list[list[dict]]]:
    """The batches of one epoch, in a seeded order: a batch is a list of sequences,
    a sequence a list of records (several when packed, one otherwise). `multiple` (--pad-multiple):
    the group layout's widths rounded up to it."""
    if layout not in BATCH_LAYOUTS:  # auto is the driver's to resolve first
        raise ValueError(f"no batches for layout {layout!r}")
    rng = random.Random(seed)
    if layout == "group":
        return _group_batches(rows, batch_size, batch_tokens, rng, multiple)
    if layout == "flat":
        return _flat_batches(rows, batch_size, batch_tokens, rng)
    if layout == "pack":
        seqs = pack(rows, ctx_len)
    else:
        seqs = [[r] for r in rows]
    rng.shuffle(seqs)
    n = rows_per_batch(batch_size, batch_tokens, ctx_len)
    return [seqs[i:i + n] for i in range(0, len(seqs), n)]


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _group_batches(rows: list[dict], batch_size: int | None, batch_tokens: int, rng: random.Random,
                   multiple: int = 1) -> list:
    """Length-grouped batches: shuffle, sort by length inside windows of about 50 batches,
    cut (by count, or by padded tokens, each row's width rounded up to `multiple`), shuffle the batches."""
    shuffled = rows[:]
    rng.shuffle(shuffled)
    window = 50 * (batch_size * 64 if batch_size else batch_tokens)  # in tokens, roughly
    batches, start, size = [], 0, 0
    for end, r in enumerate(shuffled, 1):
        size += len(r["ids"])
        if size >= window or end == len(shuffled):
            batch: list = []
            for r in sorted(shuffled[start:end], key=lambda r: len(r["ids"])):
                width = round_up(len(r["ids"]), multiple)
                full = len(batch) == batch_size if batch_size else (len(batch) + 1) * width > batch_tokens
                if batch and full:
                    batches.append(batch)
                    batch = []
                batch.append([r])
            batches.append(batch)
            start, size = end, 0
    rng.shuffle(batches)
    return batches


FILL_LOOKAHEAD = 64  # records behind the one that did not fit that may fill a flat batch's gap


def _flat_batches(rows: list[dict], batch_size: int | None, batch_tokens: int, rng: random.Random) -> list:
    """Shuffled records cut into batches of at most `batch_tokens` real tokens (or `batch_size`
    records); a record longer than the budget is a batch of its own. No length grouping: nothing
    is padded, so a batch's records need not be alike. When the next record does not fit, the
    gap is filled from the FILL_LOOKAHEAD records behind it (each that fits, in shuffled order):
    the row's width is the run's longest batch, so every token a batch leaves empty is computed
    for nothing (2.4% of the 135M ViGGO plan's tokens without the fill)."""
    shuffled = rows[:]
    rng.shuffle(shuffled)
    if batch_size:
        return [[[r] for r in shuffled[i:i + batch_size]] for i in range(0, len(shuffled), batch_size)]
    queue = collections.deque(shuffled)
    batches: list = []
    while queue:
        batch, size = [], 0
        while queue and (not batch or size + len(queue[0]["ids"]) <= batch_tokens):
            r = queue.popleft()
            batch.append([r])
            size += len(r["ids"])
        if queue and size < batch_tokens:
            behind = [queue.popleft() for _ in range(min(FILL_LOOKAHEAD, len(queue)))]
            rest = []
            for r in behind:
                if size + len(r["ids"]) <= batch_tokens:
                    batch.append([r])
                    size += len(r["ids"])
                else:
                    rest.append(r)
            queue.extendleft(reversed(rest))
        batches.append(batch)
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


def batch_width(batch: list[list[dict]], layout: str, ctx_len: int, multiple: int = 1) -> int:
    """The padded length of a batch's rows (group: rounded up to `multiple`; flat: its one row's
    real tokens, collate pads it to the run's FlatShape)."""
    if layout == "flat":
        return sum(len(r["ids"]) for seq in batch for r in seq)
    if layout == "pack":
        return max(sum(len(r["ids"]) for r in seq) for seq in batch)
    if layout == "pad":
        return ctx_len
    longest = max(len(seq[0]["ids"]) for seq in batch)
    return max(longest, min(round_up(longest, multiple), ctx_len))  # rounding never past ctx_len


def collate(batch: list[list[dict]], layout: str, ctx_len: int, pad_id: int, real: bool = True,
            multiple: int = 1, flat=None) -> dict:
    """Tensors for one batch: input_ids, position_ids (pack, flat) or attention_mask (pad),
    and the loss as loss_index (flat positions that have a label) and loss_labels; for the flat
    layout also cu_seqlens, the records' boundaries (ft_train.flat.collate_flat: `flat` is the
    run's FlatShape, or the batch's own when None).

    Packed rows use position ids that restart at each record and no attention
    mask, which gives each record its own causal block. Grouped rows are
    right-padded and need neither (see the module doc). Listing the loss
    positions here, on the host, lets the model compute logits only there,
    with no device-to-host sync. A batch with real=False has no loss positions.
    """
    import torch

    if layout not in BATCH_LAYOUTS:
        raise ValueError(f"no batch for layout {layout!r}")
    if layout == "flat":
        from ft_train.flat import collate_flat

        return collate_flat(batch, pad_id, real, flat)
    width = batch_width(batch, layout, ctx_len, multiple)
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
    out = {"input_ids": ids, "loss_index": torch.tensor(index, dtype=torch.long),
           "loss_labels": torch.tensor(labels, dtype=torch.long)}
    if layout == "pack":
        out["position_ids"] = pos
    elif layout == "pad":
        out["attention_mask"] = mask
    return out


def count_tokens(rows: list[dict]) -> tuple[int, int]:
    """(all tokens, loss tokens) over the rows."""
    return sum(len(r["ids"]) for r in rows), sum(sum(1 for x in r["labels"] if x != IGNORE) for r in rows)
