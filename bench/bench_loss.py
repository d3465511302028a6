#!/usr/bin/env python
"""Benchmark ft-train's LM-head loss: the plain one (all target rows' logits at once) against the
chunked fused one (ft_train.fused_loss.linear_cross_entropy), forward + backward.

    python bench/bench_loss.py                   # CPU: fp32, sizes that finish in ~3 minutes on 2 cores
    python bench/bench_loss.py --out runs/bench_loss.json
    python bench/bench_loss.py --rows 2048,8192  # on a CUDA GPU (bf16) this is the default

Heads: Qwen2.5-1.5B's (hidden 1536, vocabulary 151,936) and SmolLM2-135M's (576, 49,152); N target
rows (the loss's rows: ft-train computes logits only at target tokens). The plain loss is
F.cross_entropy(F.linear(hidden, weight).float(), labels, reduction="sum"); both are divided by N
before the backward, as ft-train does. Inputs are random; hidden and weight both need gradients.

Peak memory is what the loss adds beyond its inputs: on CUDA torch.cuda.max_memory_allocated minus
the memory allocated after the inputs; on the CPU each case runs in its own process and reports
its peak resident set (ru_maxrss) minus the one measured after allocating the inputs. Time: on
CUDA the median of 3 timed runs after a warm-up; on the CPU one run (a run is seconds long).
Prints a table and writes the figures as JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEADS = {"qwen2.5-1.5b": (1536, 151936), "smollm2-135m": (576, 49152)}
# On the CPU in fp32 the plain loss at N=8192 and V=151,936 needs ~15 GB and the three matmuls take
# minutes on 2 cores: the CPU default keeps Qwen's head to smaller N.
CPU_ROWS = {"qwen2.5-1.5b": (1024, 2048), "smollm2-135m": (2048, 8192)}
GPU_ROWS = (2048, 8192)


def run_case(case: dict) -> dict:
    """One loss on one head at one N: {"seconds", "peak_mib", "loss", ...}."""
    import torch
    import torch.nn.functional as F
    from ft_train.fused_loss import chunk_rows_for, linear_cross_entropy

    device = torch.device(case["device"])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    hidden_size, vocab = HEADS[case["head"]]
    n = case["rows"]
    g = torch.Generator(device=device).manual_seed(0)
    # filled in place: a temporary copy would raise the CPU baseline's peak RSS
    hidden = torch.empty(n, hidden_size, device=device, dtype=dtype).normal_(generator=g).requires_grad_()
    weight = torch.empty(vocab, hidden_size, device=device, dtype=dtype).normal_(0, 0.02, generator=g).requires_grad_()
    labels = torch.randint(0, vocab, (n,), device=device, generator=g)

    def loss_fn():
        if case["loss"] == "fused":
            return linear_cross_entropy(hidden, weight, labels)
        return F.cross_entropy(F.linear(hidden, weight).float(), labels, reduction="sum")

    def step() -> float:
        hidden.grad = weight.grad = None
        loss = loss_fn()
        (loss / n).backward()
        return loss.item()  # a host sync: the step is done

    if device.type == "cuda":
        step()  # warm-up: kernels chosen, allocator primed
        hidden.grad = weight.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(3):
            t = time.perf_counter()
            loss = step()
            times.append(time.perf_counter() - t)
        peak = torch.cuda.max_memory_allocated() - base
        seconds = statistics.median(times)
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, inputs already in memory
        t = time.perf_counter()
        loss = step()
        seconds = time.perf_counter() - t
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
    return {**case, "dtype": str(dtype).removeprefix("torch."), "hidden": hidden_size, "vocab": vocab,
            "chunk_rows": min(n, chunk_rows_for(vocab)) if case["loss"] == "fused" else n,
            "seconds": seconds, "peak_mib": peak / 2**20, "loss": loss,
            "threads": torch.get_num_threads()}


def in_child(case: dict) -> dict:
    """run_case in a fresh process: on the CPU its peak RSS is this case's alone."""
    out = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--heads", default=",".join(HEADS), help="which of " + ", ".join(HEADS))
    cpu_rows = "; ".join(f"{head} " + ",".join(map(str, rows)) for head, rows in CPU_ROWS.items())
    ap.add_argument("--rows", default=None,
                    help=f"target rows N, comma-separated (default: 2048,8192 on CUDA; on the CPU {cpu_rows})")
    ap.add_argument("--out", default=None, help="write the figures here as JSON")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return

    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    results = []
    print(f"{'head':<14} {'N':>6} {'loss':<6} {'chunk':>6} {'seconds':>8} {'peak MiB':>9} {'loss value':>14}")
    for head in args.heads.split(","):
        rows = [int(r) for r in args.rows.split(",")] if args.rows else GPU_ROWS if device == "cuda" else CPU_ROWS[head]
        for n in rows:
            pair = {}
            for loss in ("plain", "fused"):
                case = {"head": head, "rows": n, "loss": loss, "device": device}
                r = run_case(case) if device == "cuda" else in_child(case)
                pair[loss] = r
                results.append(r)
                print(f"{head:<14} {n:>6} {loss:<6} {r['chunk_rows']:>6} {r['seconds']:>8.3f} {r['peak_mib']:>9.0f} "
                      f"{r['loss']:>14.6f}", flush=True)
                if device == "cuda":
                    torch.cuda.empty_cache()
            p, f = pair["plain"], pair["fused"]
            print(f"{'':<14} {'':>6} fused/plain: time x{f['seconds'] / p['seconds']:.2f}, "
                  f"memory x{f['peak_mib'] / max(p['peak_mib'], 1e-9):.2f}, loss {f['loss'] / p['loss'] - 1:+.1e}")
    if args.out:
        name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
        meta = {"device": name,
                "torch": torch.__version__, "command": " ".join(sys.argv)}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
