"""The flat layout (--layout flat, auto's choice on a GPU): no padding between records.

A batch's records lie end to end in one row; each keeps its own positions (rotary restarts at
0) and attends only inside itself, through variable-length flash attention given the records'
boundaries (`cu_seqlens`, as flash-attn's varlen kernels and TRL's padding-free batches take
them). The group layout pads each record to its batch's width: 15% of the tokens of the 135M
ViGGO plan with CUDA graphs on (bench/batch_shapes.py), compute spent on nothing.

A CUDA graph replays fixed shapes, so every batch of a run has the same FlatShape: the row's
width and the number of boundaries. The space past the last record is split into pieces of at
most `max_len` tokens that attend only to themselves (no labels: they add nothing to the loss),
as many as make the boundary count the run's; `max_len`, the longest record, bounds every piece,
which is what the kernel's grid is sized by. A batch with fewer records has more, shorter pieces.

Attention goes through transformers' AttentionInterface: `register` puts a wrapper in the place
of its "sdpa" entry (the implementation ft-train loads every model with) that takes the flat path
when a forward carries boundaries (the `ft_cu_seqlens` keyword, which transformers hands through
each layer to its attention call) and calls the original SDPA function otherwise, so generation
and every other forward are as before. The model's config is never changed: a layer recomputed by
gradient checkpointing in the backward sees the same keywords and takes the same path. On a CUDA
device in bf16/fp16 the kernel is torch's flash attention (aten's varlen `_flash_attention_forward`,
with its autograd and inductor fallbacks); elsewhere (the CPU, fp32) SDPA with the block-diagonal
causal mask the boundaries give, the same arithmetic.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ft_train.data import IGNORE, round_up

MIN_PIECE = 64  # max_len's floor: with very short records the tail would otherwise need a piece every few tokens


@dataclass(frozen=True)
class FlatShape:
    width: int  # tokens in every batch's row
    pieces: int  # sequences (records and tail pieces) in every batch: cu_seqlens has pieces + 1
    max_len: int  # no sequence is longer: the kernel's max_seqlen


def flat_shape(batches, multiple: int = 8) -> FlatShape:
    """The one shape that fits every batch given (each a list of [record] sequences): the width a
    multiple of `multiple` with room for at least one tail token; pieces, the fewest with which
    every batch's tail splits into pieces of 1..max_len tokens. The varlen kernels launch blocks
    for every piece, so each spare one costs time (a piece count sized for a tail as wide as the
    row made 137 where 98 fit the 135M ViGGO plan)."""
    sizes = [(len(b), sum(len(seq[0]["ids"]) for seq in b)) for b in batches]
    longest = max((len(seq[0]["ids"]) for b in batches for seq in b), default=1)
    max_len = max(longest, MIN_PIECE)
    width = round_up(max((u for _, u in sizes), default=0) + 1, multiple)
    while True:  # each pass adds `multiple` (<= max_len) tokens to every tail and at most one piece: it ends
        pieces = max((n + -(-(width - u) // max_len) for n, u in sizes), default=1)
        if all(pieces - n <= width - u for n, u in sizes):
            return FlatShape(width, pieces, max_len)
        width += multiple


def boundaries(lengths: list[int], shape: FlatShape) -> list[int]:
    """cu_seqlens for records of `lengths` in a row of shape.width: the records, then the tail cut
    into shape.pieces - len(lengths) pieces of 1 to shape.max_len tokens each."""
    out = [0]
    for n in lengths:
        out.append(out[-1] + n)
    k = shape.pieces - len(lengths)
    tail = shape.width - out[-1]
    if k < 1 or not k <= tail <= k * shape.max_len or max(lengths, default=0) > shape.max_len:
        raise ValueError(f"records of {sum(lengths)} tokens ({len(lengths)}) do not fit the flat shape {shape}")
    base, extra = divmod(tail, k)
    for i in range(k):
        out.append(out[-1] + base + (1 if i < extra else 0))
    return out


def collate_flat(batch: list[list[dict]], pad_id: int, real: bool = True, shape: FlatShape | None = None) -> dict:
    """data.collate for the flat layout: input_ids and position_ids [1, width], cu_seqlens
    [pieces + 1] (int32), loss_index and loss_labels as every layout has them."""
    import torch

    records = [r for seq in batch for r in seq]
    shape = shape or flat_shape([batch])
    cu = boundaries([len(r["ids"]) for r in records], shape)
    ids = torch.full((1, shape.width), pad_id, dtype=torch.long)
    pos = torch.empty((1, shape.width), dtype=torch.long)
    index, labels = [], []
    for start, end in zip(cu, cu[1:], strict=False):  # every piece's positions restart, the tail's too
        pos[0, start:end] = torch.arange(end - start)
    for r, start in zip(records, cu, strict=False):
        ids[0, start:start + len(r["ids"])] = torch.tensor(r["ids"])
        if real:
            for i, y in enumerate(r["labels"]):
                if y != IGNORE:
                    index.append(start + i)
                    labels.append(y)
    return {"input_ids": ids, "position_ids": pos, "cu_seqlens": torch.tensor(cu, dtype=torch.int32),
            "loss_index": torch.tensor(index, dtype=torch.long), "loss_labels": torch.tensor(labels, dtype=torch.long)}


def flat_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                   sliding_window=None, softcap=None, ft_cu_seqlens=None, ft_max_len=None, **kwargs):
    """transformers' attention call ([1, heads, tokens, dim] in; [1, tokens, heads, dim], None
    out) over the records that ft_cu_seqlens bounds."""
    import torch

    if ft_cu_seqlens is None or query.shape[0] != 1:
        raise RuntimeError("ft-train's flat attention needs one row and its records' boundaries")
    if softcap is not None or dropout:
        raise RuntimeError("ft-train's flat attention has no logit softcap or dropout")
    # [tokens, heads, dim] views: the projections' own layout, no copy; the kernel needs only the
    # last dimension contiguous
    q, k, v = (x.transpose(1, 2)[0] for x in (query, key, value))
    if q.is_cuda and q.dtype in (torch.bfloat16, torch.float16):
        q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
        window = {} if sliding_window is None else {"window_size_left": sliding_window - 1, "window_size_right": 0}
        out = torch.ops.aten._flash_attention_forward(
            q, k, v, ft_cu_seqlens, ft_cu_seqlens, ft_max_len, ft_max_len, 0.0, True, False, scale=scaling,
            **window)[0]
    else:
        out = _masked_attention(q, k, v, ft_cu_seqlens, scaling, sliding_window)
    return out.unsqueeze(0), None


def _masked_attention(q, k, v, cu_seqlens, scaling, sliding_window):
    """SDPA with the block-diagonal causal mask of the boundaries (the CPU's and fp32's path)."""
    import torch

    n = q.shape[0]
    at = torch.arange(n, device=q.device)
    record = torch.searchsorted(cu_seqlens[1:].to(torch.long), at, right=True)
    mask = (record[:, None] == record[None, :]) & (at[:, None] >= at[None, :])
    if sliding_window is not None:
        mask &= at[:, None] - at[None, :] < sliding_window
    groups = q.shape[1] // k.shape[1]
    k, v = (x.repeat_interleave(groups, dim=1) for x in (k, v))
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=mask, scale=scaling)
    return out.transpose(0, 1)


@functools.cache  # once per process
def register() -> None:
    """The flat path in front of transformers' "sdpa" attention function (module doc)."""
    from transformers import AttentionInterface

    sdpa = AttentionInterface._global_mapping["sdpa"]

    def sdpa_or_flat(module, query, key, value, attention_mask, *args, **kwargs):
        if kwargs.get("ft_cu_seqlens") is None:
            return sdpa(module, query, key, value, attention_mask, *args, **kwargs)
        return flat_attention(module, query, key, value, attention_mask, *args, **kwargs)

    AttentionInterface.register("sdpa", sdpa_or_flat)
