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

Decoding is the loop ft-infer's hf engine runs, ft_common.decode (one place, so the two
give the same text): prompts tokenised with the tokenizer's special tokens, left-padded,
argmax, stop at the stop id or eos, the text decoded with special tokens kept and cut at
the stop string. Not `model.generate`: the model's generation_config (a repetition_penalty,
say) would make it differ from ft-infer.
"""

from __future__ import annotations

import importlib
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


def greedy_complete(model, tokenizer, prompts: Sequence[str], stop_id: int, max_new_tokens: int = 256,
                    batch_size: int = 32, device=None, synced_gpus: bool = False) -> list[str]:
    """Greedy completions of `prompts`, each cut before its stop token (or eos)."""
    return [text for text, _ in complete(model, tokenizer, prompts, stop_id, max_new_tokens,
                                         batch_size, device, synced_gpus)]


def complete(model, tokenizer, prompts: Sequence[str], stop_id: int, max_new_tokens: int = 256,
             batch_size: int = 32, device=None, synced_gpus: bool = False,
             graphed=None) -> list[tuple[str, str]]:
    """(completion, finish_reason) per prompt, in order; finish_reason "stop" or "length" as ft-infer.

    graphed (a ft_common.decode_graphs.GraphedDecodeStep of `model`, on a CUDA device, not under
    synced_gpus): the decode steps over a static KV cache, replayed from a CUDA graph (a small
    model's step is launch-bound); its graph is released at the end. The cache holds every key
    slot from the start, so sums run over masked slots too: in bf16 an argmax may rarely differ
    from the eager loop's.

    synced_gpus (DeepSpeed ZeRO-3): every forward gathers parameters from every rank, so
    all ranks must run the same number of forwards. A rank whose batch has stopped keeps
    stepping until every rank's has, but the number of batches must already be equal:
    the caller gives every rank the same number of prompts, the same batch_size and the
    same max_new_tokens (valid_accuracy does).
    """
    import torch
    from ft_common.decode import attention_without_cudnn, cut_completion, decode, eos_ids, pad_id

    device = torch.device(device) if device is not None else next(model.parameters()).device
    static_cache = None
    if graphed is not None:
        from transformers import StaticCache

        static_cache = lambda n, length: StaticCache(config=model.config, max_cache_len=length)  # noqa: E731
    stops = {stop_id} | eos_ids(tokenizer, getattr(model, "generation_config", None))
    stop_text = tokenizer.decode([stop_id], skip_special_tokens=False)
    encoded = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]  # as ft-infer encodes
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))  # less padding per batch
    out: list[tuple[str, str]] = [("", "length")] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            # inference=False, torch.no_grad(): ZeRO-3's parameter hooks need ordinary tensors
            with attention_without_cudnn(device):  # no cuDNN plan for every new key length
                rows = decode(model, [encoded[i] for i in batch], device=device, pad=pad_id(tokenizer),
                              new=max_new_tokens, stop_ids=stops, inference=False,
                              # ZeRO-3: ranks step until all are done; else the lagged flag (no wait per step)
                              all_done=_all_ranks_done if synced_gpus else None,
                              static_cache=static_cache, compiled=graphed)
            for i, ids in zip(batch, rows, strict=True):
                text, reason, _ = cut_completion(tokenizer, ids, stops, (stop_text,) if stop_text else ())
                out[i] = (text, reason)
    finally:
        model.train(was_training)
        if graphed is not None:
            graphed.release()
    return out


def _all_ranks_done(done) -> bool:
    """Whether to stop stepping under synced_gpus: every rank's batch is done."""
    import torch

    left = (~done).any().to(torch.int32)
    if torch.distributed.is_initialized():
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
                   synced_gpus: bool = False, graphed=None) -> dict:
    """{"val_accuracy", "val_n", "val_gen_s"} of the checker's verdicts on greedy completions
    (and "val_graphs_failed" when `graphed`, see complete, could not capture and decoded eagerly).

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
                       batch_size, device, synced_gpus, graphed)
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
            "val_gen_s": round(time.perf_counter() - start, 3),
            **({"val_graphs_failed": graphed.failed} if graphed is not None and graphed.failed else {})}
