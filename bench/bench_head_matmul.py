#!/usr/bin/env python
"""The LM head's three matmuls per loss chunk (ft_train.fused_loss), each in the layouts cuBLAS
might serve faster: which one to use at Qwen2.5's 151,936-token vocabulary.

At 1.5B the compiled step's profile (docs/benchmarks.md, "The loss's softmax and the optimizer step
compiled too") has these products on cuBLAS's sm80 cutlass kernels, 1.3-1.4 ms each for a 768- or
883-row chunk (~300 TFLOP/s), where the blocks' matmuls get sm90 kernels at ~750: about 11 ms of a
103 ms step. This times, for a chunk of R rows (hidden H, vocabulary V, bf16):

    logits   [R, V]  F.linear(x, W) | (W @ x.T).T (then .contiguous(), as the softmax needs it)
    dgrad    [R, H]  g @ W          | (W.T @ g.T).T
    wgrad    [V, H]  g.T @ x        | (x.T @ g).T   (+ the fp32 accumulator's add, as fused_loss does)

and, on CUDA, names the kernels each one ran (torch.profiler). The median of --repeats timed runs after a
warm-up, CUDA events; TFLOP/s = 2 R H V / time.

    python bench/bench_head_matmul.py --out runs/bench_head_matmul.json          # CUDA: bf16
    python bench/bench_head_matmul.py --rows 64 --vocab 4096 --repeats 2         # CPU smoke (fp32)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def layouts(x, w, g, acc):
    """{product: {layout: thunk}}; each thunk returns the product as fused_loss uses it."""
    return {
        "logits": {"F.linear(x, W)": lambda: F.linear(x, w),
                   "(W @ x.T).T contiguous": lambda: (w @ x.T).T.contiguous()},
        "dgrad": {"g @ W": lambda: g @ w,
                  "(W.T @ g.T).T": lambda: (w.T @ g.T).T},
        "wgrad": {"g.T @ x, fp32 add": lambda: acc.add_(g.T @ x),
                  "(x.T @ g).T, fp32 add": lambda: acc.add_((x.T @ g).T)},
    }


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def kernels(fn, device: torch.device) -> list[str]:
    """The CUDA kernels one call ran, by name (none on the CPU: its ops say nothing of kernels)."""
    if device.type != "cuda":
        return []
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    names = [e.key for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    return [n[:90] for n in names][:4]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="768,883,1024,2048", help="chunk rows, comma-separated")
    ap.add_argument("--hidden", type=int, default=1536)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    gen = torch.Generator(device=device).manual_seed(0)
    w = torch.empty(args.vocab, args.hidden, device=device, dtype=dtype).normal_(0, 0.02, generator=gen)
    acc = torch.zeros(args.vocab, args.hidden, device=device, dtype=torch.float32)
    rows_out = []
    for rows in (int(r) for r in args.rows.split(",")):
        x = torch.empty(rows, args.hidden, device=device, dtype=dtype).normal_(generator=gen)
        g = torch.empty(rows, args.vocab, device=device, dtype=dtype).normal_(0, 1e-4, generator=gen)
        flops = 2 * rows * args.hidden * args.vocab
        for product, options in layouts(x, w, g, acc).items():
            for name, fn in options.items():
                with torch.no_grad():
                    seconds = timed(fn, device, args.repeats)
                    row = {"rows": rows, "product": product, "layout": name, "ms": round(seconds * 1e3, 3),
                           "tflops": round(flops / seconds / 1e12, 1), "kernels": kernels(fn, device)}
                rows_out.append(row)
                print(f"{rows:>5} {product:<7} {name:<24} {row['ms']:>8.3f} ms {row['tflops']:>7.1f} TFLOP/s  {row['kernels'][:1]}")
    if args.out:
        meta = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
                "dtype": str(dtype), "hidden": args.hidden, "vocab": args.vocab}
        with open(args.out, "w") as f:
            json.dump({**meta, "runs": rows_out}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
