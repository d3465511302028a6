"""What every Ray Train worker runs: it carries out the driver's Plan. Read it top to bottom:

    train_loop_per_worker        Ray's entry: Worker(plan).fit()
    Worker.__init__              rank, device; the model with the added tokens; the engine the plan names
    Worker.fit                   resume (or, with the lr left to it, choose it from the loss first), then for
                                 each epoch: train_epoch, evaluate, pick the best, checkpoint, save
                                 the training state when due, stop early if told
    Worker.train_epoch           train_step over this rank's share of the epoch's batches, a
                                 metrics line every --log-every steps, a state save when due
    train_step                   one micro-step: collate, to the device, forward, backward,
                                 an optimizer step when one is due
    evaluate                     the validation metrics, summed over all ranks

The driver (driver.py) has read, checked, tokenised and batched the data and chosen the
engine: a worker decides none of it again. Rank 0 writes every file (checkpointer.py).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from ft_common.atomic import atomic_write
from ft_common.decode_graphs import GraphedDecodeStep
from ft_common.errors import UsageError
from ft_common.jsonl import read_records
from ft_common.lean_imports import hide_unused

from ft_train import manifest, recipe
from ft_train.checkpointer import Checkpointer
from ft_train.config import TrainConfig
from ft_train.data import IGNORE, collate, real_tokens, shard
from ft_train.dist import all_sum
from ft_train.engine import Engine, make_engine
from ft_train.flat import register as register_flat_attention
from ft_train.fused_loss import linear_cross_entropy
from ft_train.plan import Plan
from ft_train.tokens import resize_embeddings

# The metric that picks the best epoch (the `best` link, --patience) and whether lower or higher is
# better: Plan.select_by, validation perplexity or the task checker's accuracy (--select-by).
PPL = ("val_ppl", "min")


def rank_key(metrics: dict, select_by: tuple[str, str]) -> tuple:
    """Higher is better: the selection metric, then perplexity, which breaks ties and ranks the
    epochs before the first accuracy (an epoch with an accuracy beats every epoch without)."""
    key, direction = select_by
    if key == "val_ppl":
        return (-metrics["val_ppl"],)
    value = metrics.get(key)
    score = -1.0 if value is None else value if direction == "max" else -value
    return (score, -metrics["val_ppl"])


def is_better(metrics: dict, best: dict | None, select_by: tuple[str, str] = PPL) -> bool:
    return best is None or rank_key(metrics, select_by) > rank_key(best, select_by)


def accuracy_epochs(epochs: int) -> range:
    """The epochs (1-based) that generate and score for --select-by accuracy: the last three (all of
    a shorter run). In the 25 committed runs that measured more epochs (the second half of each,
    2-10 epochs, 135M to 1.5B) the most accurate epoch was always one of the last three, and each
    generation pass costs a 135M ViGGO run about 1.2 s, two fifths of an epoch's training."""
    return range(max(1, epochs - 2), epochs + 1)


class CausalLMLoss(torch.nn.Module):
    """A causal LM and its loss in one forward, so DeepSpeed and DDP wrap both.

    Logits are computed only at the positions that have a label (the target
    tokens by default): no vocabulary-wide fp32 logits for prompt or padding.
    With `fused` (--fused-loss, the default) the LM head and the cross-entropy run
    a chunk of rows at a time (fused_loss.linear_cross_entropy), so not even those
    rows' [N, vocab] logits exist at once. Returns the sum of the token NLLs.
    """

    compiled_loss = False  # --compile: the fused loss's softmax compiled too (PlainEngine sets it)

    def __init__(self, lm: torch.nn.Module, fused: bool = True, flat=None):
        super().__init__()
        self.lm = lm
        self.fused = fused
        self.flat_max_len = flat.max_len if flat else None  # `flat`: the run's FlatShape (the flat layout)

    def forward(self, input_ids, loss_index, loss_labels, position_ids=None, attention_mask=None,
                masked: bool = False, cu_seqlens=None):
        """`masked`: some loss_labels are IGNORE (padding of a fixed-shape batch, ft_train.step_graphs).
        `cu_seqlens`: the flat layout's record boundaries (ft_train.flat)."""
        flat = None if cu_seqlens is None else (cu_seqlens, self.flat_max_len)
        hidden = label_hidden(self.lm, input_ids, loss_index, position_ids, attention_mask, flat)
        head = self.lm.get_output_embeddings()
        if self.fused and fusable(head):
            return linear_cross_entropy(hidden, head.weight, loss_labels, head.bias, masked=masked,
                                        compiled=self.compiled_loss)
        return F.cross_entropy(head(hidden).float(), loss_labels, reduction="sum", ignore_index=IGNORE)


def label_hidden(lm: torch.nn.Module, input_ids, loss_index, position_ids=None, attention_mask=None, flat=None):
    """The model's last hidden states at the positions that have a label ([N, hidden]): what the LM
    head and the loss read (CausalLMLoss; bench/loss_before.py's per-token losses). `flat`:
    (cu_seqlens, max_len) of the flat layout, whose attention is ft_train.flat's."""
    base = getattr(lm, lm.base_model_prefix)
    extra = {}
    if flat is not None:  # the flat layout: its records' boundaries, for ft_train.flat's attention
        register_flat_attention()
        extra = {"ft_cu_seqlens": flat[0], "ft_max_len": flat[1]}
    # rows_not_packed: flat rows are packed, but their attention needs no mask (nor transformers' search for one)
    with rows_not_packed(position_ids is None or flat is not None):
        hidden = base(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                      use_cache=False, **extra).last_hidden_state
    return hidden.flatten(0, 1).index_select(0, loss_index)


def check_records_apart(lm: torch.nn.Module) -> None:
    """The flat layout's promise, checked on this model before training: a record's hidden states
    do not depend on the record before it in the row. A model whose attention ignores the
    boundaries (attention code of its own that does not go through transformers' interface) would
    otherwise train on records that see each other, silently. Two forwards of a few tokens through
    the first block (one block's attention shows it), in the model's own (CPU, fp32) state, before
    any engine or compile touches it."""
    base = getattr(lm, lm.base_model_prefix)
    layers = getattr(base, "layers", None)
    vocab = lm.get_input_embeddings().num_embeddings
    ids = torch.randint(0, vocab, (11,), generator=torch.Generator().manual_seed(0))
    positions = torch.cat([torch.arange(6), torch.arange(5)])[None]
    boundaries = torch.tensor([0, 6, 11], dtype=torch.int32)
    second = torch.arange(6, 11)
    training = lm.training
    lm.eval()
    if isinstance(layers, torch.nn.ModuleList) and len(layers) > 1:
        base.layers = layers[:1]
    try:
        with torch.no_grad():
            together = label_hidden(lm, ids[None], second, positions, None, (boundaries, 6))
            alone = label_hidden(lm, ids[None, 6:], torch.arange(5))
    finally:
        if layers is not None:
            base.layers = layers
        lm.train(training)
    if not torch.allclose(together, alone, rtol=1e-3, atol=1e-4):
        raise UsageError(f"--layout flat: {type(lm).__name__}'s attention does not keep records apart (its attention "
                         "code does not go through transformers' AttentionInterface); use --layout group")


@contextlib.contextmanager
def rows_not_packed(active: bool):
    """While `active`, transformers treats the batch as what it is: one record per row, right-padded,
    plainly causal; or, for the flat layout, records whose attention ft_train.flat keeps apart by
    their boundaries, so no mask is wanted either. The pack layout passes position ids that restart
    at each record and needs transformers' mask; the others have two questions' answers known:

    - Packed sequences: none. Without a mask or a cache transformers looks for them every forward
      (masking_utils.find_packed_sequence_indices), and its test of the result reads a device
      value on the host: a sync per step, and an error inside a CUDA graph capture.
    - The causal mask: not needed, SDPA's is_causal does it. transformers skips it by that rule,
      except while a CUDA stream captures (its is_tracing() is then true, up to at least 5.17):
      there it built a [rows, 1, width, width] mask, so every captured step copied the key and
      value heads for grouped-query attention and ran SDPA with a mask (no flash kernel), and a
      --compile'd block compiled for "no mask" failed the capture on its guard."""
    import transformers.masking_utils as masking

    packed = getattr(masking, "find_packed_sequence_indices", None)
    causal = getattr(masking, "_ignore_causal_mask_sdpa", None)
    if not active or packed is None:
        yield
        return
    masking.find_packed_sequence_indices = _no_packed_sequences
    if causal is not None:
        masking._ignore_causal_mask_sdpa = _causal_skip(causal)
    try:
        yield
    finally:
        masking.find_packed_sequence_indices = packed
        if causal is not None:
            masking._ignore_causal_mask_sdpa = causal


def _no_packed_sequences(position_ids):
    return None


@functools.cache  # one wrapper per original: rows_not_packed enters every forward
def _causal_skip(original):
    """transformers' _ignore_causal_mask_sdpa, answering True (no mask: SDPA's is_causal) for a
    forward over whole rows with no padding mask and no cache, whatever is tracing; any other
    case (a padding mask, a cache, a sliding window), or a version whose arguments are named
    otherwise, is the original's to answer."""
    signature = inspect.signature(original)
    if not {"padding_mask", "q_length", "kv_length", "q_offset"} <= set(signature.parameters):
        return original

    def ignore(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        offset = a.get("q_offset", 0)
        if (a.get("padding_mask") is None and a.get("local_attention_size") is None
                and not isinstance(offset, torch.Tensor) and offset == 0
                and a.get("q_length") == a.get("kv_length")):
            return True
        return original(*args, **kwargs)

    return ignore


def check_finite(loss: float, step: int, epoch: int) -> None:
    """Stop at the first log line (or epoch end, or state save) whose training loss is NaN or
    infinite: every step after it would train nothing and the weights are already lost (the
    checkpoints written before it are kept). Every rank checks the same all-reduced loss, so all
    stop together."""
    if not math.isfinite(loss):
        raise FloatingPointError(f"the training loss is {loss} at step {step} (epoch {epoch + 1}): the weights "
                                 "diverged; try a lower --lr, or --cuda-graphs off")


def fusable(head: torch.nn.Module) -> bool:
    """Whether the fused loss can read the head's weight directly: a Linear whose weight is all
    here. Under DeepSpeed ZeRO-3 it is a partitioned placeholder (ds_id, no elements) that only
    the module's own forward hooks gather, so the head must be called as a module."""
    weight = getattr(head, "weight", None)
    return isinstance(head, torch.nn.Linear) and not hasattr(weight, "ds_id") and weight.numel() > 0


def to_device(batch: dict, device: torch.device) -> dict:
    """Copy a batch to the device without waiting for it (pinned host memory on GPU)."""
    if device.type != "cuda":
        return batch
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


class MicroStep(NamedTuple):
    loss_sum: torch.Tensor  # the batch's summed token NLL, still on the device (no host sync)
    tokens: int  # tokens in the loss
    stepped: bool  # an optimizer step ended this micro-step


def train_step(engine: Engine, batch: list, real: bool, cfg: TrainConfig, pad_id: int, flat=None) -> MicroStep:
    """One micro-step on one batch (real=False: a fill-in copy, no loss); the optimizer
    steps every cfg.grad_accum of them. Replayed from a CUDA graph where the engine has them.
    `flat`: the run's FlatShape (the flat layout)."""
    x = collate(batch, cfg.layout, cfg.ctx_len, pad_id, real, cfg.pad_multiple, flat)
    n = len(x["loss_labels"])
    if engine.graphs is not None:
        loss_sum = engine.graphs.forward_backward(x)
        if loss_sum is not None:
            return MicroStep(loss_sum, n, engine.step())
    x = to_device(x, engine.device)
    with engine.no_sync(), engine.autocast():
        loss_sum = engine.forward_model(**x)
    engine.backward(loss_sum / max(n, 1))
    return MicroStep(loss_sum.detach(), n, engine.step())


@torch.no_grad()
def evaluate(engine: Engine, batches: list, cfg: TrainConfig, pad_id: int, flat=None) -> dict:
    """{"val_loss": mean NLL per loss token, "val_ppl": its exp}: a true token-weighted
    perplexity over every rank's share (`batches`, from data.shard)."""
    engine.train(False)
    total = torch.zeros((), device=engine.device, dtype=torch.float64)
    count = torch.zeros((), device=engine.device, dtype=torch.float64)
    for batch, real in batches:
        x = to_device(collate(batch, cfg.layout, cfg.ctx_len, pad_id, real, cfg.pad_multiple, flat), engine.device)
        with engine.autocast():
            total += engine.forward_model(**x)
        count += len(x["loss_labels"])
    engine.train(True)
    s, c = all_sum(total, count)
    val_loss = s / max(c, 1)
    return {"val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50.0))}


@dataclass
class Progress:
    """Where training is: what a state save keeps and --resume brings back."""

    step: int = 0
    epoch: int = 0  # the epoch to start in
    batch: int = 0  # its batches already trained (a resume mid-epoch)
    history: list[dict] = field(default_factory=list)  # one row per epoch
    best: dict | None = None  # {"epoch", "val_ppl", "val_accuracy" (if measured), "path"}
    carried: list[float] = field(default_factory=lambda: [0.0, 0.0])  # the interrupted epoch's (loss sum, tokens)

    def state(self, epoch: int, batch: int, epoch_loss: list[float]) -> dict:
        return {"step": self.step, "epoch": epoch, "batch": batch, "history": self.history, "best": self.best,
                "epoch_loss": epoch_loss}

    @classmethod
    def restored(cls, extra: dict, rank: int) -> Progress:
        # the interrupted epoch's loss was summed over all ranks: rank 0 carries it
        return cls(extra["step"], extra["epoch"], extra["batch"], extra["history"], extra["best"],
                   extra["epoch_loss"] if rank == 0 else [0.0, 0.0])


def train_loop_per_worker(config: dict) -> None:
    """Ray Train's entry; config is {"plan": Plan} (driver.run_workers)."""
    hide_unused()  # a worker process of ours: before Worker imports transformers
    Worker(config["plan"]).fit()


class Worker:
    def __init__(self, plan: Plan):
        import ray.train
        import ray.train.torch
        import transformers

        self.marks = {"worker_start": time.time()}  # rank 0's, for the manifest's timing (driver.train)
        self.spent = {"train_s": 0.0, "eval_s": 0.0}
        self.plan = plan
        cfg = self.cfg = plan.cfg
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        # Ray's device for a worker process; in this process (local mode) Ray answers cuda
        # whenever there is one, so the plan's device decides
        self.device = ray.train.torch.get_device() if plan.device == "cuda" else torch.device("cpu")
        if plan.in_process and plan.zero.deepspeed:
            _one_rank_group(plan.device)  # DeepSpeed needs a process group; Ray Train's workers get one
        torch.manual_seed(cfg.seed + self.rank)
        _quiet_libraries()
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        tokenizer = transformers.AutoTokenizer.from_pretrained(plan.tokenizer_dir)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            cfg.model_path, dtype=torch.float32, attn_implementation="sdpa")
        resize_embeddings(self.model, len(tokenizer))
        if plan.flat:
            check_records_apart(self.model)
        self.model.config.use_cache = False
        if cfg.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

        self.engine = make_engine(CausalLMLoss(self.model, cfg.fused_loss, plan.flat), cfg, plan.zero, self.device,
                                  self.world, plan.total_steps)
        if cfg.compile == "on" and not self.engine.compiled_blocks and self.rank == 0:  # on: ZeRO-0 (compile_choice)
            print("ft-train: --compile found no transformer blocks in this model; training eagerly",
                  file=sys.stderr, flush=True)
        if cfg.cuda_graphs == "on":  # resolved by the driver (driver.graphs_choice)
            from ft_train.step_graphs import shape_table

            self.engine.use_graphs(shape_table(plan.train_batches, cfg.ctx_len, cfg.pad_multiple, plan.flat), self.pad_id,
                                   log=lambda line: print(line, file=sys.stderr, flush=True))
        # Where the training steps are graphed, so are --select-by accuracy's decode steps (one for the
        # run: after a failed capture every later epoch decodes eagerly, said once).
        self.decode_step = GraphedDecodeStep(self.model, on_failure=lambda why: print(
            f"ft-train: CUDA graph capture of the validation decode step failed ({why}); decoding eagerly",
            file=sys.stderr, flush=True)) if cfg.cuda_graphs == "on" else None
        self.tokenizer = tokenizer
        self.ckpt = Checkpointer(cfg, self.engine, self.rank, self.model, tokenizer, plan.stop_id)
        self.metrics: Metrics | None = None
        self.ray_parent: int | None = None
        self.marks["workers_ready"] = time.time()

    def fit(self) -> None:
        cfg, out = self.cfg, Path(self.cfg.out_dir)
        extra = self.ckpt.restore()
        p = Progress.restored(extra, self.rank) if extra else Progress()
        self.metrics = Metrics(out / "metrics.jsonl", self.rank, p.step if extra else None)
        if self.plan.recipe.get("lr", 0) is None:  # left to us (Recipe.lr_from_loss: no --lr, the loss rule):
            # the lr from the loss before training, or a resumed state's
            self.adopt_lr(self.engine.peak_lr() if extra else self.lr_from_loss())
        # a Ray worker whose node is gone (ft-train killed) must stop writing; in process it goes with us
        self.ray_parent = None if self.plan.in_process else os.getppid()
        checker = self.checker()
        try:
            for epoch in range(p.epoch, cfg.epochs):
                if self.run_epoch(epoch, p, checker):
                    break
        finally:  # also when interrupted (Ctrl-C reaches a run in ft-train's own process)
            if checker is not None:
                checker.close()
            self.metrics.close()
        self.ckpt.finish()
        self.marks["checkpoint_written"] = time.time()
        if self.rank == 0:
            graphs = self.engine.graphs
            compiled = {}
            if cfg.compile == "on":  # how many blocks compiled, and why they went back to eager if they did
                from ft_train.compile import compile_failed_part, compile_failure, compile_seconds

                failed = compile_failure(self.model)
                compiled = {"compiled_blocks": self.engine.compiled_blocks, "compile_s": compile_seconds(),
                            **({"compile_failed": failed, "compile_failed_in": compile_failed_part()} if failed else {})}
            with atomic_write(out / ".work" / manifest.WORKER_MARKS) as fh:
                json.dump({"marks": self.marks, **self.spent, **({"graphs": graphs.summary()} if graphs else {}),
                           **compiled}, fh)

    def run_epoch(self, epoch: int, p: Progress, checker) -> bool:
        """Train, validate, pick the best, checkpoint, save state when due; True: stop early."""
        import ray.train

        cfg, select_by = self.cfg, self.plan.select_by
        t0 = time.time()
        train_loss = self.train_epoch(epoch, p)
        check_finite(train_loss, p.step, epoch)  # the steps after the last log line: before any checkpoint
        t1 = time.time()
        row = {"epoch": epoch + 1, "step": p.step, "train_loss": train_loss, "train_s": t1 - t0,
               **evaluate(self.engine, shard(self.plan.valid_batches, self.rank, self.world), cfg, self.pad_id,
                           self.plan.flat)}
        if checker is not None and epoch + 1 in accuracy_epochs(cfg.epochs):
            row.update(self.accuracy(checker))
        row.update({"eval_s": time.time() - t1, "time": time.time()})
        self.marks["last_epoch_end"] = row["time"]
        self.spent["train_s"] += row["train_s"]
        self.spent["eval_s"] += row["eval_s"]
        improved = is_better(row, p.best, select_by)
        if improved:
            p.best = {"epoch": epoch + 1, "val_ppl": row["val_ppl"], "path": f"checkpoints/epoch-{epoch + 1}"}
            if "val_accuracy" in row:
                p.best["val_accuracy"] = row["val_accuracy"]
        # every rank sees the same numbers, so every rank decides alike
        stopped = self.stop_reason(row, p.best, epoch)
        row.update({"best_epoch": p.best["epoch"], **({"stopped": stopped} if stopped else {})})
        p.history.append(row)
        self.metrics.write(row)
        last = stopped is not None or epoch + 1 == cfg.epochs
        if improved or last or cfg.save_all:
            self.checkpoint_epoch(epoch + 1, p, improved, last)
        if not last and (all_sum(self.ckpt.clock_due())[0] > 0 or cfg.save_every):
            self.ckpt.save_state(p.state(epoch + 1, 0, [0.0, 0.0]))
        ray.train.report({k: v for k, v in row.items() if isinstance(v, int | float)})
        return stopped is not None

    def lr_from_loss(self) -> float:
        """--lr-rule loss: the lr from the model's mean loss on the first recipe.PROBE_BATCHES training
        batches before any update (every rank the same count: its share, from data.shard), written
        to metrics.jsonl as step 0."""
        batches = shard(self.plan.train_batches[0], self.rank, self.world)[:recipe.PROBE_BATCHES]
        loss = evaluate(self.engine, batches, self.cfg, self.pad_id, self.plan.flat)["val_loss"]
        lr = recipe.loss_rule_lr(self.plan.recipe["params"], loss)
        self.metrics.write({"step": 0, "loss_before": loss, "lr_chosen": lr, "time": time.time()})
        self.plan = replace(self.plan, recipe={**self.plan.recipe, "loss_before": loss})
        return lr

    def adopt_lr(self, lr: float) -> None:
        """Train at peak lr `lr`: the schedule, and the config and recipe the checkpoints' manifests record."""
        self.engine.set_peak_lr(lr)
        self.cfg = replace(self.cfg, lr=lr)
        self.plan = replace(self.plan, cfg=self.cfg, recipe={**self.plan.recipe, "lr": lr})
        self.ckpt.cfg = self.cfg

    def checker(self):
        """The task's checker for --select-by accuracy (this rank's own: SQL's is a worker process)."""
        if not self.plan.eval_records:
            return None
        from ft_train.valid_accuracy import checker_for

        return checker_for(self.plan.eval_records)

    def accuracy(self, checker) -> dict:
        """{"val_accuracy", "val_n", "val_errors", "val_gen_s"} on the plan's validation sample."""
        from ft_train.valid_accuracy import valid_accuracy

        with self.engine.autocast():
            return valid_accuracy(self.model, self.tokenizer, self.plan.eval_records, self.plan.stop_id,
                                  checker=checker, device=self.device,
                                  batch_size=len(self.plan.eval_records) if self.device.type == "cuda" else 32,
                                  rank=self.rank, world=self.world, synced_gpus=self.plan.zero.stage == 3,
                                  graphed=self.decode_step)

    def train_epoch(self, epoch: int, p: Progress) -> float:
        """Train this rank's share of the epoch's batches (from p.batch on); the mean train loss, all ranks."""
        cfg, plan = self.cfg, self.plan
        batches = shard(plan.train_batches[epoch], self.rank, self.world, multiple=cfg.grad_accum)
        self.engine.train()
        # Losses stay on the device (no host sync per step) until a log line needs them.
        ep_loss, ep_tokens = self._zero(p.carried[0]), self._zero(p.carried[1])
        run_loss, run_tokens = self._zero(), self._zero()
        p.carried = [0.0, 0.0]
        seen_tokens, t_log = 0, time.perf_counter()
        for i, (batch, real) in enumerate(batches):
            if i < p.batch:
                continue
            self.marks.setdefault("first_step", time.time())
            seen_tokens += real_tokens(batch, real)
            micro = train_step(self.engine, batch, real, cfg, self.pad_id, plan.flat)
            run_loss += micro.loss_sum
            run_tokens += micro.tokens
            if not micro.stepped:
                continue
            p.step += 1
            if self.ray_parent is not None and os.getppid() != self.ray_parent:  # our Ray node was killed
                os._exit(1)
            state_due = False
            # Steps 1 and 2 are logged too: step 1's loss is the model's on the task's targets before
            # any update, and step 2 times one step, the first ETA (a CPU step can take half a minute).
            if p.step % cfg.log_every == 0 or p.step in (1, 2, plan.total_steps):
                # one sync per log line: the loss, the tokens, and rank 0's clock saying a state save is due
                loss_total, tok_total, seen_total, due = all_sum(run_loss, run_tokens, seen_tokens,
                                                                 self.ckpt.clock_due())
                state_due = due > 0
                now = time.perf_counter()
                line = {"step": p.step, "epoch": epoch + 1, "loss": loss_total / max(tok_total, 1),
                        "lr": self.engine.lr(), "tokens_per_s": seen_total / max(now - t_log, 1e-9), "time": time.time()}
                if self.device.type == "cuda":
                    line["peak_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
                self.metrics.write(line)
                check_finite(line["loss"], p.step, epoch)
                seen_tokens, t_log = 0, now
            state_due = state_due or self.ckpt.step_due(p.step)
            if p.step % cfg.log_every == 0 or state_due:
                ep_loss += run_loss
                ep_tokens += run_tokens
                run_loss.zero_()
                run_tokens.zero_()
            if state_due and i + 1 < len(batches):
                sums = all_sum(ep_loss, ep_tokens)
                check_finite(sums[0] / max(sums[1], 1), p.step, epoch)  # no state saved from lost weights
                self.ckpt.save_state(p.state(epoch, i + 1, sums))
        p.batch = 0
        loss_sum, tokens = all_sum(ep_loss + run_loss, ep_tokens + run_tokens)
        return loss_sum / max(tokens, 1)

    def stop_reason(self, row: dict, best: dict, epoch: int) -> str | None:
        cfg = self.cfg
        if cfg.stop_perplexity is not None and row["val_ppl"] <= cfg.stop_perplexity:
            return f"validation perplexity {row['val_ppl']:.3f} <= {cfg.stop_perplexity}"
        if cfg.patience is not None and epoch + 1 - best["epoch"] >= cfg.patience:
            metric = "accuracy" if self.plan.select_by[0] == "val_accuracy" else "perplexity"
            return f"no better validation {metric} for {cfg.patience} epochs"
        return None

    def checkpoint_epoch(self, epoch: int, p: Progress, improved: bool, last: bool) -> None:
        """Gather the weights from every rank's shard; rank 0 hands them to the checkpointer."""
        state_dict = self.engine.full_state_dict(dtype=torch.bfloat16 if self.plan.zero.bf16 else None)
        if self.rank == 0:
            plan = self.plan
            man = manifest.build(self.cfg.to_dict(), plan.parent, plan.data, plan.resolved(), p.history, p.best,
                                 plan.lineage)
            state_dict = {k.removeprefix("lm."): v for k, v in state_dict.items()}
            self.ckpt.write_epoch(epoch, state_dict, man, improved, last)

    def _zero(self, value: float = 0.0) -> torch.Tensor:
        return torch.tensor(value, device=self.device, dtype=torch.float64)


class Metrics:
    """metrics.jsonl, appended by rank 0 (write() on other ranks does nothing). On a resume
    from `step`, the lines written after it go first (they will be written again)."""

    def __init__(self, path: Path, rank: int, resumed_step: int | None):
        if rank == 0 and resumed_step is not None:
            _truncate_metrics(path, resumed_step)
        self.fh = open(path, "a", encoding="utf-8") if rank == 0 else None

    def write(self, record: dict) -> None:
        if self.fh:
            self.fh.write(json.dumps(record) + "\n")
            self.fh.flush()

    def close(self) -> None:
        if self.fh:
            self.fh.close()


def _truncate_metrics(path: Path, step: int) -> None:
    if not path.is_file():
        return
    keep = [r for r in read_records(str(path)) if r["step"] <= step]
    with atomic_write(path) as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in keep))


def _one_rank_group(device: str) -> None:
    """A process group of this process alone (an in-process store: no port to find)."""
    dist = torch.distributed
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):  # DeepSpeed reads them
        os.environ.setdefault(name, "1" if "SIZE" in name else "0")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo", store=dist.HashStore(), rank=0, world_size=1)


def _quiet_libraries() -> None:
    """Workers' stderr reaches the user through Ray: keep only what matters."""
    import logging
    import warnings

    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
