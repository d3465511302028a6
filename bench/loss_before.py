"""The loss `--lr-rule loss` chooses the lr from, measured without training: a model's mean loss on a
task's training targets before any update, on the batches ft-train's workers would measure it on
(the first recipe.PROBE_BATCHES of epoch 1 of the plan one GPU gets), and the lr the rule gives.

ft-train measures this itself at the start of a run with --lr-rule loss (metrics.jsonl's step 0);
this script answers it on any machine, for the rule's table in the ft-train README:

    python bench/loss_before.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --train runs/gpu-data/viggo-train.jsonl --out results/bench/loss_before.jsonl

On a CPU a 1.5B model takes about 40 s a 4,096-token batch in float32 on 2 cores; --batches trades
that for noise, --dtype bfloat16 measures the weights a GPU run trains.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    from ft_train import recipe

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="What -m takes: a folder, a .gguf file, an ft checkpoint.")
    ap.add_argument("--train", required=True, help="Training records (ft-prep's JSONL).")
    ap.add_argument("--batches", type=int, default=recipe.PROBE_BATCHES, help="Batches to measure on.")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                    help="The weights' dtype (a GPU run trains and measures in bfloat16).")
    ap.add_argument("--out", help="Append the result here as one JSON line (and print it).")
    args = ap.parse_args()

    import torch
    import transformers
    from ft_train.config import TrainConfig
    from ft_train.data import collate
    from ft_train.driver import prepare
    from ft_train.tokens import resize_embeddings
    from ft_train.worker import CausalLMLoss

    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        # the plan one GPU would get (its batches), built on any machine, as --device cuda --dry-run does
        cfg = TrainConfig(model=args.model, train=args.train, out_dir=str(Path(tmp) / "plan"), device="cuda",
                          quiet=True)
        plan = prepare(cfg).plan
        tokenizer = transformers.AutoTokenizer.from_pretrained(plan.tokenizer_dir)
        model = transformers.AutoModelForCausalLM.from_pretrained(plan.cfg.model_path, dtype=torch.float32)
    resize_embeddings(model, len(tokenizer))
    model.to(getattr(torch, args.dtype))  # after the resize, as the workers do (FlatMaster's bf16 copy)
    loss_model = CausalLMLoss(model.eval())
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, tokens = 0.0, 0
    with torch.no_grad():
        for batch in plan.train_batches[0][:args.batches]:
            x = collate(batch, plan.cfg.layout, plan.cfg.ctx_len, pad_id, True, plan.cfg.pad_multiple)
            total += float(loss_model(**x))
            tokens += len(x["loss_labels"])
    loss = total / max(tokens, 1)
    params = plan.recipe["params"]
    result = {"model": Path(args.model).name, "train": args.train, "params": params,
              "batches": min(args.batches, len(plan.train_batches[0])), "loss_tokens": tokens,
              "loss_before": round(loss, 4), "lr": float(f"{recipe.loss_rule_lr(params, loss):.3g}"),
              "dtype": args.dtype, "device": "cpu", "seconds": round(time.time() - started)}
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    from ft_common.errors import FtError

    try:
        main()
    except FtError as e:  # bad records or model: one line naming them, ft's exit code
        print(f"loss_before: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
