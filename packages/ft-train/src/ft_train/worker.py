"""The training loop every Ray Train worker runs. Read it top to bottom:

1. set up: rank, device, dtype; the model with the tokenizer's added tokens
2. the engine: ZeRO stage (auto or chosen), DeepSpeed or plain PyTorch
3. resume from OUT_DIR/state when asked
4. for each epoch: train (this rank's equal share of batches), validate
   (token-weighted perplexity, summed over all ranks), write the epoch's
   checkpoint, point `best`, save the training state, stop early if told

The driver (trainer.py) has already read, checked and tokenised the data, so
a worker only ever sees lists of token ids. Rank 0 writes every file.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ft_train import checkpoint, manifest
from ft_train.checkpoint import STATE
from ft_train.config import TrainConfig
from ft_train.data import collate, make_batches, shard, tokens_per_batch
from ft_train.engine import Engine, activation_estimate, choose_zero, device_memory
from ft_train.plot import plot_curve
from ft_train.tokens import resize_embeddings


class CausalLMLoss(torch.nn.Module):
    """A causal LM and its loss in one forward, so DeepSpeed and DDP wrap both.

    Logits are computed only at the positions that have a label (the target
    tokens by default): no vocabulary-wide fp32 logits for prompt or padding.
    Returns the sum of the token NLLs.
    """

    def __init__(self, lm: torch.nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, loss_index, loss_labels, position_ids=None, attention_mask=None):
        base = getattr(self.lm, self.lm.base_model_prefix)
        hidden = base(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                      use_cache=False).last_hidden_state
        logits = self.lm.get_output_embeddings()(hidden.flatten(0, 1).index_select(0, loss_index))
        return F.cross_entropy(logits.float(), loss_labels, reduction="sum")


CHECKPOINT_INTERVAL_S = 60.0  # a better epoch is on disk at most this long after the last write


def all_sum(*values: torch.Tensor | float) -> list[float]:
    """Sum numbers (tensors on any device, or floats) over every rank; one sync, floats back."""
    dist = torch.distributed
    on_gpu = [v.device for v in values if isinstance(v, torch.Tensor) and v.device.type == "cuda"]
    device = on_gpu[0] if on_gpu else torch.device("cpu")
    if dist.is_initialized():
        # gloo reduces host tensors; nccl only device tensors, even when every value is a float.
        gloo = dist.get_backend() == "gloo"
        device = torch.device("cpu") if gloo else torch.device("cuda", torch.cuda.current_device())
    t = torch.stack([torch.as_tensor(v).detach().to(device, torch.float64).reshape(()) for v in values])
    if dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def to_device(batch: dict, device: torch.device) -> dict:
    """Copy a batch to the device without waiting for it (pinned host memory on GPU)."""
    if device.type != "cuda":
        return batch
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


def barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def train_loop_per_worker(payload: dict) -> None:
    import ray.train
    import ray.train.torch
    import transformers

    # ---- 1. set up --------------------------------------------------------------------
    cfg = TrainConfig.from_dict(payload["config"])
    out = Path(cfg.out_dir)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    bf16 = cfg.dtype == "bf16" or (cfg.dtype == "auto" and device.type == "cuda")
    torch.manual_seed(cfg.seed + rank)
    _quiet_libraries()
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    tokenizer = transformers.AutoTokenizer.from_pretrained(payload["tokenizer_dir"])
    model = transformers.AutoModelForCausalLM.from_pretrained(
        cfg.model_path, dtype=torch.float32, attn_implementation=payload.get("attn", "sdpa"))
    resize_embeddings(model, len(tokenizer))
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train_rows, valid_rows = payload["train_rows"], payload["valid_rows"]

    def epoch_batches(epoch: int):
        batches = make_batches(train_rows, cfg.layout, cfg.batch_size, cfg.batch_tokens, cfg.ctx_len, seed=cfg.seed * 1000 + epoch)
        return shard(batches, rank, world, multiple=cfg.grad_accum)

    micro_per_epoch = len(epoch_batches(0))  # the same every epoch: only the order changes
    steps_per_epoch = micro_per_epoch // cfg.grad_accum
    total_steps = steps_per_epoch * cfg.epochs

    # ---- 2. the engine ----------------------------------------------------------------
    if cfg.zero == "auto":
        n_params = sum(p.numel() for p in model.parameters())
        acts = activation_estimate(model.config, tokens_per_batch(cfg), bf16, cfg.gradient_checkpointing)
        stage, offload = choose_zero(n_params, acts, world, device_memory(device), device.type == "cpu", bf16)
        if cfg.offload not in ("auto", "none"):
            stage, offload = 3, cfg.offload
    else:
        stage, offload = int(cfg.zero), ("none" if cfg.offload == "auto" else cfg.offload)
    engine = Engine(CausalLMLoss(model), cfg, stage, offload, device, world, total_steps, bf16)
    resolved = {"zero": stage, "offload": offload, "dtype": "bfloat16" if bf16 else "float32",
                "workers": world, "device": device.type, "deepspeed": engine.use_deepspeed,
                "steps_per_epoch": steps_per_epoch, "total_steps": total_steps}
    if rank == 0:
        print(f"ft-train: {json.dumps(resolved)}", flush=True)

    # ---- 3. resume ----------------------------------------------------------------------
    step, start_epoch, skip = 0, 0, 0
    history: list[dict] = []
    best: dict | None = None
    carried = [0.0, 0.0]  # (loss sum, loss tokens) of the interrupted epoch, over all ranks
    info = checkpoint.latest_state(out) if cfg.resume else None
    if info:
        extra = engine.load_state(out / STATE, info["tag"])
        step, start_epoch, skip = extra["step"], extra["epoch"], extra["batch"]
        history, best = extra["history"], extra["best"]
        carried = extra["epoch_loss"] if rank == 0 else [0.0, 0.0]
        checkpoint.set_rng_state(extra["rng"][rank % len(extra["rng"])])
        if rank == 0:
            print(f"ft-train: resumed at step {step} (epoch {start_epoch + 1}, batch {skip})", flush=True)
            _truncate_metrics(out / "metrics.jsonl", step)

    def save_state(epoch: int, batch: int, epoch_loss: list[float]) -> None:
        tag = f"step-{step}"
        rngs = [None] * world
        if torch.distributed.is_initialized():
            torch.distributed.all_gather_object(rngs, checkpoint.rng_state())
        else:
            rngs = [checkpoint.rng_state()]
        extra = {"step": step, "epoch": epoch, "batch": batch, "history": history, "best": best,
                 "epoch_loss": epoch_loss, "rng": rngs}
        nonlocal last_save, held, last_write
        if rank == 0 and held is not None:  # the state names the best checkpoint: it must be on disk
            writer.submit(_write_epoch, out, *held)
            held, last_write = None, time.monotonic()
        engine.save_state(out / STATE, tag, extra)
        last_save = time.monotonic()
        barrier()
        if rank == 0:
            writer.join()
            checkpoint.mark_state(out, {"tag": tag, "step": step, "epoch": epoch, "batch": batch})
        barrier()

    last_save = time.monotonic()
    ray_parent = os.getppid()
    writer = checkpoint.BackgroundWriter()  # rank 0 writes checkpoint folders while training goes on
    last_write = time.monotonic()
    held = None  # a better epoch's checkpoint not written yet (see CHECKPOINT_INTERVAL_S)
    metrics_fh = open(out / "metrics.jsonl", "a", encoding="utf-8") if rank == 0 else None

    def log(record: dict) -> None:
        if metrics_fh:
            metrics_fh.write(json.dumps(record) + "\n")
            metrics_fh.flush()

    # ---- 4. epochs -------------------------------------------------------------------
    stopped = None
    for epoch in range(start_epoch, cfg.epochs):
        batches = epoch_batches(epoch)
        engine.train()
        # Losses stay on the device (no host sync per step) until a log line needs them.
        zero = lambda v=0.0: torch.tensor(v, device=device, dtype=torch.float64)  # noqa: E731
        ep_loss, ep_tokens = zero(carried[0]), zero(carried[1])
        run_loss, run_tokens = zero(), zero()
        carried = [0.0, 0.0]
        seen_tokens, t_log = 0, time.perf_counter()
        for i, (batch, real) in enumerate(batches):
            if i < skip:
                continue
            x = to_device(collate(batch, cfg.layout, cfg.ctx_len, pad_id, real), device)
            n = len(x["loss_labels"])
            seen_tokens += sum(len(r["ids"]) for seq in batch for r in seq) if real else 0
            last_micro = (i + 1) % cfg.grad_accum == 0
            with engine.no_sync(last_micro), engine.autocast():
                loss_sum = engine.forward_model(**x)
            engine.backward(loss_sum / max(n, 1))
            run_loss += loss_sum.detach()
            run_tokens += n
            if not engine.step():
                continue
            step += 1
            if os.getppid() != ray_parent:  # our Ray node was killed (ft-train killed): stop writing now
                os._exit(1)
            state_due = False
            if step % cfg.log_every == 0 or step == total_steps:
                # one sync per log line: the loss, the tokens, and rank 0's clock saying a state save is due
                due = float(rank == 0 and time.monotonic() - last_save >= cfg.save_minutes * 60)
                loss_total, tok_total, seen_total, due_total = all_sum(run_loss, run_tokens, seen_tokens, due)
                state_due = due_total > 0
                now = time.perf_counter()
                line = {"step": step, "epoch": epoch + 1, "loss": loss_total / max(tok_total, 1), "lr": engine.lr(),
                        "tokens_per_s": seen_total / max(now - t_log, 1e-9), "time": time.time()}
                if device.type == "cuda":
                    line["peak_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                log(line)
                seen_tokens, t_log = 0, now
            state_due = state_due or bool(cfg.save_every and step % cfg.save_every == 0)
            if step % cfg.log_every == 0 or state_due:
                ep_loss += run_loss
                ep_tokens += run_tokens
                run_loss.zero_()
                run_tokens.zero_()
            if state_due and i + 1 < len(batches):
                save_state(epoch, i + 1, all_sum(ep_loss, ep_tokens))
        skip = 0
        train_loss_sum, train_tokens = all_sum(ep_loss + run_loss, ep_tokens + run_tokens)
        train_loss = train_loss_sum / max(train_tokens, 1)

        # -- validate: a true token-weighted perplexity over every rank's share
        val_loss = evaluate(engine, valid_rows, cfg, rank, world, device, pad_id)
        val_ppl = math.exp(min(val_loss, 50.0))
        row = {"epoch": epoch + 1, "step": step, "train_loss": train_loss, "val_loss": val_loss,
               "val_ppl": val_ppl, "time": time.time()}
        history.append(row)
        log(row)
        improved = best is None or val_ppl < best["val_ppl"]
        if improved:
            best = {"epoch": epoch + 1, "val_ppl": val_ppl, "path": f"checkpoints/epoch-{epoch + 1}"}
        # -- early stopping (every rank sees the same numbers, so every rank decides alike)
        if cfg.stop_perplexity is not None and val_ppl <= cfg.stop_perplexity:
            stopped = f"validation perplexity {val_ppl:.3f} <= {cfg.stop_perplexity}"
        elif cfg.patience is not None and epoch + 1 - best["epoch"] >= cfg.patience:
            stopped = f"no better validation perplexity for {cfg.patience} epochs"
        last = stopped is not None or epoch + 1 == cfg.epochs

        # -- checkpoint (a better one, or the last): gathered from every rank's shard, written by rank 0.
        # A better epoch that comes less than CHECKPOINT_INTERVAL_S after the last write is held in
        # memory until the next write or the end: on a fast run, writing (and plotting) every epoch
        # would take CPU time from the training loop, which is bound by its kernel launches.
        if improved or last or cfg.save_all:
            state_dict = engine.full_state_dict(dtype=torch.bfloat16 if bf16 else None)
            if rank == 0:
                man = manifest.build(cfg.to_dict(), payload["parent"], payload["data"], resolved, history, best,
                                     payload["lineage"])
                state_dict = {k.removeprefix("lm."): v for k, v in state_dict.items()}
                due = time.monotonic() - last_write >= CHECKPOINT_INTERVAL_S
                if improved:
                    held = None  # superseded: a better epoch is here
                if due or last or cfg.save_all:
                    if held is not None:
                        writer.submit(_write_epoch, out, *held)
                        held = None
                    writer.submit(_write_epoch, out, epoch + 1, model, state_dict, tokenizer, payload["stop_id"],
                                  man, cfg, improved)
                    last_write = time.monotonic()
                else:
                    held = (epoch + 1, model, state_dict, tokenizer, payload["stop_id"], man, cfg, improved)
            del state_dict
        # -- the full training state for --resume, when it is due (see save_minutes / save_every)
        due = float(rank == 0 and time.monotonic() - last_save >= cfg.save_minutes * 60)
        if not last and (all_sum(due)[0] > 0 or cfg.save_every):
            save_state(epoch + 1, 0, [0.0, 0.0])
        ray.train.report({**row, "best_epoch": best["epoch"], "best_val_ppl": best["val_ppl"]})
        if stopped:
            if rank == 0:
                print(f"ft-train: stopping early after epoch {epoch + 1}: {stopped}", flush=True)
            break
    if held is not None:  # a guard: the last epoch flushes what is held
        writer.submit(_write_epoch, out, *held)
    writer.join()
    if metrics_fh:
        metrics_fh.close()
    if rank == 0:
        plot_curve(out / "metrics.jsonl", out / "curve.png")


def _write_epoch(out: Path, epoch: int, model, state_dict: dict, tokenizer, stop_id, man: dict,
                 cfg: TrainConfig, improved: bool) -> None:
    checkpoint.write_hf_checkpoint(checkpoint.epoch_dir(out, epoch), model, state_dict, tokenizer, stop_id,
                                   man, cfg.to_dict())
    if improved:
        checkpoint.point_best(out, epoch)
    checkpoint.prune(out, cfg.keep, man["best"]["epoch"])
    (out / "ft-train.json").write_text(json.dumps(man, indent=2) + "\n")


@torch.no_grad()
def evaluate(engine: Engine, rows: list[dict], cfg: TrainConfig, rank: int, world: int, device, pad_id: int) -> float:
    """Mean NLL per loss token over all validation rows, summed across ranks."""
    engine.train(False)
    batches = shard(make_batches(rows, cfg.layout, cfg.batch_size, cfg.batch_tokens, cfg.ctx_len, seed=0), rank, world)
    total = torch.zeros((), device=device, dtype=torch.float64)
    count = torch.zeros((), device=device, dtype=torch.float64)
    for batch, real in batches:
        x = to_device(collate(batch, cfg.layout, cfg.ctx_len, pad_id, real), device)
        with engine.autocast():
            total += engine.forward_model(**x)
        count += len(x["loss_labels"])
    engine.train(True)
    s, c = all_sum(total, count)
    return s / max(c, 1)


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


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines written after the saved step (they will be written again)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)
