"""Validation accuracy by the task's own checker: greedy-generate on a sample of the
validation records, score each completion the way `ft-infer | ft-score TASK` would.

Perplexity on target tokens sits near 1.01-1.05 late in a run and hardly tells epochs
apart; the checker's accuracy does. A pure library (no Ray): the training loop calls

    checker = checker_for(valid_records)           # None: no ft-score, or no checker for the task
    picked = sample(valid_records, 256, seed)      # the same list on every rank
    ...each epoch:
    acc = valid_accuracy(model, tokenizer, picked, stop_id, checker=checker, device=device,
                         batch_size=64, rank=rank, world=world, synced_gpus=zero3)

ft-score is imported only inside `checker_for`, so ft-train installs and runs without it.

Decoding reproduces ft-infer's hf engine (ft_infer/engines/hf.py, stops.py) without
importing it: prompts tokenised with the tokenizer's special tokens, left-padded, position
ids that skip the padding and a 4D mask that hides it (a sequence's output does not
depend on its batch), a KV cache, argmax, stop at the stop id or eos, the text decoded
with special tokens kept and cut at the stop string. No logits processors: the model's
generation_config (a repetition_penalty, say) would make `model.generate` differ from ft-infer.
"""

from __future__ import annotations

import importlib
import inspect
import random
import time
from collections.abc import Iterable, Sequence

DEFAULT_N = 256
EXTRA_TOKENS = 16  # room past the longest reference before a completion counts as "length"
MAX_NEW_TOKENS_CAP = 512


# ---------------------------------------------------------------------------- the checker


def checker_for(records: Iterable[dict]):
    """The ft-score checker for the records' one `task`, built with ft-score's CLI defaults
    (every checker's no-argument constructor); None where checker_class finds none.

    Defaults are what `ft-score TASK` uses with no options: ViGGO strict, GSM8K's regex
    `strict` extractor (never the LLM one, which calls a model over the network), SQL in
    ft-score's jailed SQLite worker (the same SqliteExecutor path, default Limits). The
    caller closes it (`checker.close()`, or `with checker:`): SQL's worker process lives until then.
    """
    cls = checker_class(records)
    return cls() if cls else None


def checker_class(records: Iterable[dict]):
    """The ft-score Checker class for the records' one `task`, not built (the driver only asks
    whether there is one); None when ft-score is not installed, the records name no task or
    several, or the task has no checker."""
    tasks = {r.get("task") for r in records}
    if len(tasks) != 1:
        return None
    task = tasks.pop()
    if not isinstance(task, str):
        return None
    from ft_common.tasks import TASKS

    if task not in TASKS:
        return None
    try:
        from ft_score.base import Checker
    except ImportError:  # ft-score is not installed
        return None
    # ft-score's registry: a module per task, ft_score/TASK.py, or a package with its checker
    # in ft_score/TASK/checker.py (such a package's __init__ may import nothing).
    for name in (f"ft_score.{task}.checker", f"ft_score.{task}"):
        try:
            module = importlib.import_module(name)
        except ImportError:  # not this layout, or what the checker needs (sqlglot) is missing
            continue
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Checker) and value.task == task:
                return value
    return None


# ---------------------------------------------------------------------------- the sample


def sample(records: Sequence[dict], n: int = DEFAULT_N, seed: int = 0) -> list[dict]:
    """n records picked by a seeded RNG, in their file order (all of them when fewer): the
    same list for the same input on every rank and every epoch, so epochs compare."""
    if n >= len(records):
        return list(records)
    picked = sorted(random.Random(seed).sample(range(len(records)), n))
    return [records[i] for i in picked]


def default_max_new_tokens(tokenizer, records: Iterable[dict]) -> int:
    """The longest target (in tokens, stop token included) + 16, at most 512."""
    longest = max((len(tokenizer(r["target"], add_special_tokens=False)["input_ids"]) for r in records), default=0)
    return min(longest + EXTRA_TOKENS, MAX_NEW_TOKENS_CAP)


# ---------------------------------------------------------------------------- decoding


def eos_ids(model, tokenizer) -> set[int]:
    """The model's end-of-sequence ids: its generation config's and its tokenizer's (as ft-infer)."""
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    for value in (getattr(config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, Iterable):
            ids.update(int(v) for v in value)
    return ids


def greedy_complete(model, tokenizer, prompts: Sequence[str], stop_id: int, max_new_tokens: int = 256,
                    batch_size: int = 32, device=None, synced_gpus: bool = False) -> list[str]:
    """Greedy completions of `prompts`, each cut before its stop token (or eos)."""
    return [text for text, _ in complete(model, tokenizer, prompts, stop_id, max_new_tokens,
                                         batch_size, device, synced_gpus)]


def complete(model, tokenizer, prompts: Sequence[str], stop_id: int, max_new_tokens: int = 256,
             batch_size: int = 32, device=None, synced_gpus: bool = False) -> list[tuple[str, str]]:
    """(completion, finish_reason) per prompt, in order; finish_reason "stop" or "length" as ft-infer.

    synced_gpus (DeepSpeed ZeRO-3): every forward gathers parameters from every rank, so
    all ranks must run the same number of forwards. A rank whose batch has stopped keeps
    stepping until every rank's has, but the number of batches must already be equal:
    the caller gives every rank the same number of prompts, the same batch_size and the
    same max_new_tokens (valid_accuracy does).
    """
    import torch

    device = torch.device(device) if device is not None else next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    stops = {stop_id} | eos_ids(model, tokenizer)
    stop_text = tokenizer.decode([stop_id], skip_special_tokens=False)
    encoded = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]  # as ft-infer encodes
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))  # less padding per batch
    out: list[tuple[str, str]] = [("", "length")] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():  # not inference_mode: ZeRO-3's parameter hooks need ordinary tensors
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                rows = _decode(model, [encoded[i] for i in batch], stops, pad_id, max_new_tokens, device, synced_gpus)
                for i, ids in zip(batch, rows, strict=True):
                    out[i] = _finish(tokenizer, ids, stops, stop_text)
    finally:
        model.train(was_training)
    return out


def _finish(tokenizer, ids: list[int], stops: set[int], stop_text: str) -> tuple[str, str]:
    """ft_infer.stops.finish: ids cut at the first stop id, decoded, cut at the stop string."""
    stopped = False
    for i, tok in enumerate(ids):
        if tok in stops:
            ids, stopped = ids[:i], True
            break
    text = tokenizer.decode(ids, skip_special_tokens=False)
    cut = text.split(stop_text, 1)[0] if stop_text else text
    return cut, "stop" if stopped or len(cut) < len(text) else "length"


def _decode(model, prompts: list[list[int]], stops: set[int], pad_id: int, new: int, device,
            synced_gpus: bool) -> list[list[int]]:
    """One batch (ft-infer's HFEngine.decode without static cache, compile or stop strings);
    each row's ids end at (and include) its stop token."""
    import torch
    from transformers import DynamicCache

    n, width = len(prompts), max(len(p) for p in prompts)
    if new <= 0:
        return [[] for _ in prompts]
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    real = torch.zeros((n, width + new), dtype=torch.bool)  # which cache slots hold a real token
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        real[row, width - len(prompt):width] = True
    ids, real = ids.to(device), real.to(device)
    positions = (real[:, :width].long().cumsum(-1) - 1).clamp(min=0)  # padding takes no position
    # Prefill mask: causal, padding keys hidden; a padding query sees itself (an empty row gives NaN).
    causal = torch.ones((width, width), dtype=torch.bool, device=device).tril()
    mask = (causal[None] & real[:, None, :width]) | torch.eye(width, dtype=torch.bool, device=device)[None]
    stop_ids = torch.tensor(sorted(stops), dtype=torch.long, device=device)
    # transformers 5.2x renamed forward's `past_key_values` to `cache` (the old name warns).
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    cache = {cache_kw: DynamicCache(config=model.config)}

    generated = torch.full((n, new), pad_id, dtype=torch.long, device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    logits = model(input_ids=ids, attention_mask=mask[:, None], position_ids=positions, use_cache=True,
                   logits_to_keep=1, **cache).logits[:, -1]
    position = positions[:, -1:]
    steps = 0
    for step in range(new):
        token = torch.where(done, pad_id, logits.argmax(-1))
        generated[:, step] = token
        lengths += (~done).long()
        done |= torch.isin(token, stop_ids)
        steps = step + 1
        if steps == new or _all_done(done, synced_gpus):
            break
        position = position + 1
        real[:, width + step] = True
        logits = model(input_ids=token[:, None], attention_mask=real[:, None, None, :width + step + 1],
                       position_ids=position, use_cache=True, **cache).logits[:, -1]
    rows = generated[:, :steps].tolist()
    return [row[:length] for row, length in zip(rows, lengths.tolist(), strict=True)]


def _all_done(done, synced_gpus: bool) -> bool:
    """Whether to stop stepping: this batch is done, or with synced_gpus every rank's is."""
    import torch

    left = (~done).any().to(torch.int32)
    if synced_gpus and torch.distributed.is_initialized():
        left = _on_backend(left)
        torch.distributed.all_reduce(left)  # SUM > 0: some rank still generates, so all step on
    return int(left) == 0


def _on_backend(t):
    """gloo reduces host tensors, nccl only CUDA tensors."""
    import torch

    if torch.distributed.get_backend() == "gloo":
        return t.cpu()
    return t.to(torch.device("cuda", torch.cuda.current_device()))


# ---------------------------------------------------------------------------- the metric


def valid_accuracy(model, tokenizer, records: Sequence[dict], stop_id: int, *, checker, device=None,
                   batch_size: int = 32, rank: int = 0, world: int = 1, max_new_tokens: int | None = None,
                   synced_gpus: bool = False) -> dict:
    """{"val_accuracy", "val_n", "val_gen_s"} of the checker's verdicts on greedy completions.

    `records` is the whole sample, the same on every rank (`sample()`); each rank generates
    for its strided share, padded with repeats that are not counted so that every rank runs
    the same number of batches (ZeRO-3 needs it), and the counts are summed over ranks.
    A record the checker refuses (bad reference, InputError) counts as wrong and in val_errors.
    val_gen_s is this rank's wall time (ranks run alongside each other).
    """
    import torch
    from ft_common.errors import FtError

    start = time.perf_counter()
    if max_new_tokens is None:  # from the whole sample: every rank must use the same number
        max_new_tokens = default_max_new_tokens(tokenizer, records)
    mine = list(records[rank::world])
    per_rank = -(-len(records) // world)
    counted = len(mine)
    if records:
        mine += [records[0]] * (per_rank - counted)  # filler: same number of batches on every rank
    results = complete(model, tokenizer, [r["prompt"] for r in mine], stop_id, max_new_tokens,
                       batch_size, device, synced_gpus)
    correct = errors = 0
    for record, (text, reason) in zip(mine[:counted], results, strict=False):
        scored = {**record, "completion": text, "finish_reason": reason}  # what ft-infer writes
        try:
            correct += bool(checker.score(scored)["correct"])
        except FtError:
            errors += 1
    counts = torch.tensor([correct, counted, errors], dtype=torch.float64)
    if world > 1 and torch.distributed.is_initialized():
        counts = _on_backend(counts)
        torch.distributed.all_reduce(counts)
    correct, n, errors = (int(v) for v in counts.tolist())
    return {"val_accuracy": correct / n if n else None, "val_n": n, "val_errors": errors,
            "val_gen_s": round(time.perf_counter() - start, 3)}
