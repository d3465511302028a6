"""Batched decoding over a KV cache: the one loop behind ft-infer's hf engine and
ft-train's `--select-by accuracy`, so both turn a prompt into the same completion.

Extra `[models]`: torch and transformers are imported inside the functions.

Prompts are left-padded, with position ids that skip the padding and a 4D boolean
mask that hides it, so a sequence's output does not depend on its batch; the prefill
keeps only the last position's logits (no [batch, len, vocab]). What the two callers
differ in is a parameter of `decode`: how a token is picked (ft-infer samples), stop
strings, a static cache and a compiled step (ft-infer), the grad mode, and how "all
done" is decided (ft-train under ZeRO-3 asks every rank).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence

from ft_common.tasks import cut_at_stop


def eos_ids(tokenizer, generation_config=None) -> set[int]:
    """The end-of-sequence ids of a model: its generation config's and its tokenizer's."""
    ids: set[int] = set()
    for value in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, Iterable):
            ids.update(int(v) for v in value)
    return ids


def pad_id(tokenizer) -> int:
    """The id that fills padding and finished rows: the pad token's, else eos, else 0."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_id or 0


def cut_completion(tokenizer, generated: Sequence[int], stop_ids: Iterable[int],
                   stop_strings: Sequence[str] = ()) -> tuple[str, str, int]:
    """(text, finish_reason, tokens) of one row of generated ids, which may run past its stop.

    The ids are cut before the first stop id, decoded with special tokens kept, and the text
    cut at the first stop string; `tokens` counts up to and including the stop id.
    finish_reason is "stop" when a stop id or string ended it, else "length".
    """
    ids, stops = list(generated), set(stop_ids)
    count, stopped = len(ids), False
    for i, tok in enumerate(ids):
        if tok in stops:
            ids, count, stopped = ids[:i], i + 1, True
            break
    text = tokenizer.decode(ids, skip_special_tokens=False)
    cut = cut_at_stop(text, tuple(stop_strings))
    return cut, "stop" if stopped or len(cut) < len(text) else "length", count


def cache_kwarg(model) -> str:
    """transformers 5.2x renamed forward's `past_key_values` to `cache`; the old name still
    works but warns on every call, and older releases know only it."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def left_pad(prompts: Sequence[Sequence[int]], width: int, new: int, pad: int, device):
    """(ids [n, width], real [n, width + new], positions [n, width]) for prompts left-padded
    to `width`: `real` marks the cache slots that hold a real token (set for each generated
    one as decoding goes); positions skip the padding."""
    import torch

    n = len(prompts)
    ids = torch.full((n, width), pad, dtype=torch.long)
    real = torch.zeros((n, width + new), dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        real[row, width - len(prompt):width] = True
    ids, real = ids.to(device), real.to(device)
    positions = (real[:, :width].long().cumsum(-1) - 1).clamp(min=0)
    return ids, real, positions


def prefill_mask(real, width: int, static: bool):
    """The prompt pass's 4D boolean mask [batch, 1, width, keys] (True = may attend): causal,
    padding keys hidden; keys are the whole cache when it is static. A padding query sees
    only itself, so no row is empty (an empty row gives NaN)."""
    import torch

    keys = real.shape[1] if static else width
    causal = torch.ones((width, keys), dtype=torch.bool, device=real.device).tril()
    mask = causal[None] & real[:, None, :keys]
    mask |= torch.eye(width, keys, dtype=torch.bool, device=real.device)[None]
    return mask[:, None]


class DoneFlag:
    """`all_done(done)`: on a CPU, now; on a GPU, as of the previous step, read from a copy
    made then, so the host keeps queueing work instead of waiting on each step (at most one
    step more than needed)."""

    def __init__(self, device):
        import torch

        self.lagged = device.type == "cuda"
        if self.lagged:
            self.host = torch.zeros((), dtype=torch.bool).pin_memory()
            self.event = torch.cuda.Event()
            self.pending = False

    def all_done(self, done) -> bool:
        if not self.lagged:
            return bool(done.all())
        finished = False
        if self.pending:
            self.event.synchronize()
            finished = bool(self.host)
        self.host.copy_(done.all(), non_blocking=True)
        self.event.record()
        self.pending = True
        return finished


def decode(model, prompts: Sequence[Sequence[int]], *, device, pad: int, new: int, stop_ids: Iterable[int],
           pick: Callable | None = None, stop_strings=None, all_done: Callable | None = None,
           inference: bool = True, static_cache: Callable | None = None, compiled: Callable | None = None,
           on_step: Callable[[int], None] | None = None) -> list[list[int]]:
    """Generate up to `new` tokens for one batch of prompt ids; each row's ids end at (and
    include) its first stop id.

    - pick(logits) -> next ids; None: argmax (greedy).
    - stop_strings: a transformers StoppingCriteria (StopStringCriteria) over the ids so far.
    - all_done(done) -> whether to stop stepping; None: a DoneFlag on `device`.
    - inference: torch.inference_mode(); False: torch.no_grad() (DeepSpeed ZeRO-3's parameter
      hooks need ordinary tensors).
    - static_cache(batch, length) -> a StaticCache: fixed shapes; None: a DynamicCache.
    - compiled: model.forward compiled with CUDA graphs (ft-infer's --compile), or a
      GraphedDecodeStep (ft_common.decode_graphs), run for the decode steps over a static
      cache; prompt widths are rounded up to 64 (fewer shapes, fewer compiles).
    - on_step(n): told after the n-th token (host side only: no device sync).
    """
    import torch
    from transformers import DynamicCache

    n, width = len(prompts), max(len(p) for p in prompts)
    if new <= 0:
        return [[] for _ in prompts]
    if compiled is not None:
        width = -(-width // 64) * 64
    static = static_cache is not None
    ids, real, positions = left_pad(prompts, width, new, pad, device)
    stops = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)
    all_done = all_done or DoneFlag(device).all_done
    generated = torch.full((n, new), pad, dtype=torch.long, device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    extra = {"cache_position": torch.arange(width, device=device)} if static else {}
    with torch.inference_mode() if inference else torch.no_grad():
        cache = {cache_kwarg(model): static_cache(n, width + new) if static else DynamicCache(config=model.config)}
        logits = model(input_ids=ids, attention_mask=prefill_mask(real, width, static), position_ids=positions,
                       use_cache=True, logits_to_keep=1, **cache, **extra).logits[:, -1]
        position = positions[:, -1:]
        steps = 0
        for step in range(new):
            token = torch.where(done, pad, logits.argmax(-1) if pick is None else pick(logits))
            generated[:, step] = token
            lengths += (~done).long()
            hit = torch.isin(token, stops)
            if stop_strings is not None:
                hit |= stop_strings(generated[:, : step + 1], None)
            done |= hit
            steps = step + 1
            if on_step is not None:
                on_step(steps)
            if steps == new or all_done(done):
                break
            position = position + 1
            real[:, width + step] = True
            # The mask as a 4D view: transformers uses it as is (no per-step mask building,
            # no host sync to test it for padding).
            if static:  # fixed shapes: the whole mask, the cache slot to fill
                extra["cache_position"] = torch.full((1,), width + step, dtype=torch.long, device=device)
                if compiled is not None:  # CUDA graphs: the last step's outputs are no longer needed
                    # (torch.compile's; a step of our own says so with step_begin, or needs nothing)
                    getattr(compiled, "step_begin", torch.compiler.cudagraph_mark_step_begin)()
                logits = (compiled or model)(input_ids=token[:, None], attention_mask=real[:, None, None, :],
                                             position_ids=position, use_cache=True, **cache, **extra).logits[:, -1]
            else:
                logits = model(input_ids=token[:, None], attention_mask=real[:, None, None, : width + step + 1],
                               position_ids=position, use_cache=True, **cache).logits[:, -1]
    rows = generated[:, :steps].tolist()
    return [row[:length] for row, length in zip(rows, lengths.tolist(), strict=True)]


def attention_without_cudnn(device):
    """SDPA without its cuDNN backend while decoding: cuDNN builds a plan for every new key
    length, which is every step (measured on an H200: 0.5 ms of CPU per layer and step, a
    third of the step, and more the first time a shape is seen). Flash and memory-efficient
    attention have no such set-up. Used around decode() by ft-infer's hf engine and ft-train's
    accuracy check."""
    import contextlib

    if getattr(device, "type", device) != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
