"""The loss `--lr-rule loss` chooses the lr from, measured without training: a model's mean loss on a
task's training targets before any update, on the batches ft-train's workers would measure it on
(the first recipe.PROBE_BATCHES of epoch 1 of the plan one GPU gets), and the lr the rule gives.

ft-train measures this itself at the start of a run with --lr-rule loss (metrics.jsonl's step 0);
this script answers it on any machine, for the rule's table in the ft-train README. Give it the
run's --valid file too: without one the plan holds part of the training file out, and its batches
are other batches (whose losses differ by up to 2x: rows of one length are batched together):

    python bench/loss_before.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --train runs/gpu-data/viggo-train.jsonl --valid runs/gpu-data/viggo-valid.jsonl \
        --out results/bench/loss_before.jsonl

Besides the loss the rule reads it reports `loss_before_task`, the same without the records'
special tokens (<END_A> and the like: new rows of the vocabulary, which no model predicts before
training), and each batch's loss. On a CPU a 1.5B model takes about 50 s a 4,096-token batch in
float32 on 2 cores; --batches trades that for noise, --dtype bfloat16 measures the weights a GPU
run trains.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path


def token_nll(model, x: dict, max_len: int | None = None):
    """Each loss position's NLL (fp32), as ft_train.worker.CausalLMLoss sums them (unfused).
    `max_len`: the flat layout's longest sequence (its batches carry cu_seqlens)."""
    import torch
    from ft_train.worker import label_hidden

    flat = (x["cu_seqlens"], max_len) if "cu_seqlens" in x else None
    hidden = label_hidden(model, x["input_ids"], x["loss_index"], x.get("position_ids"), x.get("attention_mask"), flat)
    logits = model.get_output_embeddings()(hidden).float()
    return torch.nn.functional.cross_entropy(logits, x["loss_labels"], reduction="none")


def plan_config(args, out_dir: str):
    """The run's TrainConfig, its flags parsed as ft-train parses them; a flag ft-train would refuse
    is a UsageError naming --ft-args."""
    import click
    from ft_common.errors import UsageError
    from ft_train.cli import cli as ft_train_cli
    from ft_train.config import TrainConfig

    try:
        extra = shlex.split(args.ft_args)
        flags = ["-m", args.model, "--train", args.train, *(["--valid", args.valid] if args.valid else []),
                 "-o", out_dir, "--device", args.plan, "-q", *extra]
        return TrainConfig.from_cli(ft_train_cli.make_context("ft-train", flags).params)
    except (ValueError, click.ClickException) as e:
        message = e.format_message() if isinstance(e, click.ClickException) else str(e)
        raise UsageError(f"--ft-args {args.ft_args!r}: {message}") from None


def main() -> None:
    from ft_train import recipe

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="What -m takes: a folder, a .gguf file, an ft checkpoint.")
    ap.add_argument("--train", required=True, help="Training records (ft-prep's JSONL).")
    ap.add_argument("--valid", help="The run's validation records (--valid): without them the plan holds out part of "
                    "the training file, as ft-train does, and its batches are other batches.")
    ap.add_argument("--plan", choices=("cuda", "cpu"), default="cuda",
                    help="Whose batches: the plan one GPU gets (the GPU runs'), or a CPU run's.")
    ap.add_argument("--ft-args", default="", help="The run's other ft-train flags (they can change its batches), "
                    "e.g. '--epochs 3'.")
    ap.add_argument("--batches", type=int, default=recipe.PROBE_BATCHES, help="Batches to measure on.")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                    help="The weights' dtype (a GPU run trains and measures in bfloat16).")
    ap.add_argument("--out", help="Append the result here as one JSON line (and print it).")
    args = ap.parse_args()

    import torch
    import transformers
    from ft_train.data import collate
    from ft_train.driver import prepare
    from ft_train.tokens import resize_embeddings

    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        # the plan a run on --plan's device gets (its batches), built on any machine as --dry-run builds it
        cfg = plan_config(args, str(Path(tmp) / "plan"))
        plan = prepare(cfg).plan
        tokenizer = transformers.AutoTokenizer.from_pretrained(plan.tokenizer_dir)
        model = transformers.AutoModelForCausalLM.from_pretrained(plan.cfg.model_path, dtype=torch.float32)
    resize_embeddings(model, len(tokenizer))
    model.to(getattr(torch, args.dtype))  # after the resize, as the workers do (FlatMaster's bf16 copy)
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # the records' special tokens (<END_A> ...): rows added to the vocabulary, which no model predicts before training
    special = torch.tensor(tokenizer.convert_tokens_to_ids(plan.cfg.special_tokens), dtype=torch.long)
    total = task_total = 0.0
    tokens = task_tokens = 0
    per_batch = []
    with torch.no_grad():
        for batch in plan.train_batches[0][:args.batches]:
            x = collate(batch, plan.cfg.layout, plan.cfg.ctx_len, pad_id, True, plan.cfg.pad_multiple, plan.flat)
            nll = token_nll(model, x, plan.flat.max_len if plan.flat else None)
            task = ~torch.isin(x["loss_labels"], special)
            total, tokens = total + float(nll.sum()), tokens + len(nll)
            task_total, task_tokens = task_total + float(nll[task].sum()), task_tokens + int(task.sum())
            per_batch.append(round(float(nll.mean()), 3))
    loss, task_loss = total / max(tokens, 1), task_total / max(task_tokens, 1)
    params = plan.recipe["params"]
    result = {"model": Path(args.model).name, "train": args.train, "valid": args.valid, "params": params,
              "batches": len(per_batch), "loss_tokens": tokens, "loss_before": round(loss, 4),
              "task_tokens": task_tokens, "loss_before_task": round(task_loss, 4),
              "batch_losses": per_batch, "lr": float(f"{recipe.loss_rule_lr(params, loss):.3g}"),
              "dtype": args.dtype, "plan": args.plan, "device": "cpu", "seconds": round(time.time() - started)}
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    from ft_common.errors import FtError

    try:
        main()
    except FtError as e:  # bad records, model or flags: one line naming them, ft's exit code
        print(f"loss_before: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
