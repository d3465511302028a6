"""ft-train's training step eager and replayed from CUDA graphs (--cuda-graphs), on the plan ft-train
builds for the data: the same batches in the same order from the same weights, each mode in turn.

Reports, per mode, milliseconds per optimizer step and real tokens/s after the first `--skip` steps
(steady state; the graphs' captures fall in them too and are reported apart), and the largest
relative difference between the two modes' step losses and their final fp32 master weights: the
check that a replay trains what the eager step trains. Needs a CUDA device.

    python bench/bench_graphs.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --train .carry/data/viggo-train.jsonl --valid .carry/data/viggo-valid.jsonl --steps 120
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import replace


def run(plan, batches: list, graphs: bool, skip: int, cudnn_attention: bool = False) -> dict:
    import torch
    import transformers
    from ft_train.engine import make_engine
    from ft_train.step_graphs import shape_table
    from ft_train.tokens import resize_embeddings
    from ft_train.worker import CausalLMLoss, train_step

    cfg = plan.cfg
    torch.manual_seed(cfg.seed)
    tokenizer = transformers.AutoTokenizer.from_pretrained(plan.tokenizer_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=torch.float32,
                                                              attn_implementation="sdpa")
    resize_embeddings(model, len(tokenizer))
    device = torch.device("cuda", 0)
    engine = make_engine(CausalLMLoss(model, cfg.fused_loss, plan.flat), cfg, plan.zero, device, 1, len(batches))
    torch.backends.cuda.enable_cudnn_sdp(cudnn_attention)  # make_engine turns it off (engine.avoid_cudnn_attention)
    if graphs:
        engine.use_graphs(shape_table(plan.train_batches, cfg.ctx_len, cfg.pad_multiple, plan.flat),
                          tokenizer.pad_token_id or 0,
                          log=print)
    engine.train()
    losses, t_start, tokens = [], None, 0
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i, batch in enumerate(batches):
        if i == skip:
            torch.cuda.synchronize()
            t_start = time.perf_counter()
        micro = train_step(engine, batch, True, cfg, tokenizer.pad_token_id or 0, plan.flat)
        losses.append(micro.loss_sum / max(micro.tokens, 1))
        if i >= skip:
            tokens += sum(len(r["ids"]) for seq in batch for r in seq)
    torch.cuda.synchronize()
    end = time.perf_counter()
    steady = len(batches) - skip
    out = {"mode": "graphs" if graphs else "eager", "steps": len(batches),
           "first_steps_s": round(t_start - t0, 3), "ms_per_step": round(1000 * (end - t_start) / steady, 2),
           "tokens_per_s": round(tokens / (end - t_start)), "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
           "losses": [float(x) for x in losses], "master": engine.master.master.detach().clone()}
    if graphs:
        out["graphs"] = engine.graphs.summary()
    del engine, model
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--valid", required=True)
    ap.add_argument("--steps", type=int, default=120, help="optimizer steps per mode (from the plan's first epochs)")
    ap.add_argument("--skip", type=int, default=20, help="steps left out of the timing")
    ap.add_argument("--ft-args", default="", help="more ft-train flags, e.g. '--batch-tokens 12288'")
    ap.add_argument("--cudnn-attention", action="store_true",
                    help="train with SDPA's cuDNN backend, which ft-train turns off (the NaN check)")
    ap.add_argument("--out")
    a = ap.parse_args()
    import shlex

    import torch
    from ft_train.cli import cli as ft_train_cli  # click parses the flags as ft-train does
    from ft_train.config import TrainConfig
    from ft_train.driver import prepare

    with tempfile.TemporaryDirectory() as out:
        ctx = ft_train_cli.make_context("ft-train", ["-m", a.model, "--train", a.train, "--valid", a.valid, "-o", out,
                                                      "--device", "cuda", "--cuda-graphs", "on", "-q",
                                                      *shlex.split(a.ft_args)])
        cfg = TrainConfig.from_cli(ctx.params)
        plan = prepare(replace(cfg, out_dir=out)).plan
        batches = [b for epoch in plan.train_batches for b in epoch][:a.steps]
        eager = run(plan, batches, graphs=False, skip=a.skip, cudnn_attention=a.cudnn_attention)
        graphed = run(plan, batches, graphs=True, skip=a.skip, cudnn_attention=a.cudnn_attention)
    loss_diff = max(abs(g - e) / max(abs(e), 1e-6) for g, e in zip(graphed["losses"], eager["losses"], strict=True))
    weight_diff = float((graphed["master"] - eager["master"]).abs().max())
    finite = {m["mode"]: all(math.isfinite(x) for x in m["losses"]) for m in (eager, graphed)}
    result = {"model": a.model, "gpu": torch.cuda.get_device_name(0), "cudnn_attention": a.cudnn_attention,
              "losses_finite": finite, "first_losses": {m["mode"]: m["losses"][:8] for m in (eager, graphed)},
              "batch_tokens": plan.cfg.batch_tokens,
              "pad_multiple": plan.cfg.pad_multiple, "steps": len(batches), "skip": a.skip,
              "max_loss_rel_diff": round(loss_diff, 5), "max_master_abs_diff": weight_diff,
              "speedup": round(eager["ms_per_step"] / graphed["ms_per_step"], 2),
              "modes": [{k: v for k, v in m.items() if k not in ("losses", "master")} for m in (eager, graphed)]}
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
