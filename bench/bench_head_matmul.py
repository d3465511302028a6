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

and, on CUDA, names the kernels each one ran (torch.profiler, the longest first), and two more wgrad
forms: `addmm_` into a bf16 accumulator (Liger Kernel's; the add inside the GEMM) and `addmm` with
`out_dtype=float32` into the fp32 one. `--graphs` times each product replayed from a CUDA graph as
well, captured as ft-train's graphed steps are (ft_common.decode_graphs.CudaGraphs; cuBLAS may
choose other kernels under capture). The median
of --repeats timed runs after a warm-up, CUDA events; TFLOP/s = 2 R H V / time.

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


def layouts(x, w, g, acc, acc16):
    """{product: {layout: thunk}}; each thunk returns the product as fused_loss uses it."""
    return {
        "logits": {"F.linear(x, W)": lambda: F.linear(x, w),
                   "(W @ x.T).T contiguous": lambda: (w @ x.T).T.contiguous()},
        "dgrad": {"g @ W": lambda: g @ w,
                  "(W.T @ g.T).T": lambda: (w.T @ g.T).T},
        "wgrad": {"g.T @ x, fp32 add": lambda: acc.add_(g.T @ x),
                  "(x.T @ g).T, fp32 add": lambda: acc.add_((x.T @ g).T),
                  **({"addmm_ bf16 acc": lambda: acc16.addmm_(g.T, x),
                      "addmm out_dtype fp32": lambda: torch.addmm(acc, g.T, x, out_dtype=torch.float32, out=acc)}
                     if x.is_cuda else {})},
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


def graphed(fn):
    """`fn` warmed and captured on the side stream ft-train's step graphs use (ft_common's
    CudaGraphs): the returned thunk replays it."""
    from ft_common.decode_graphs import CudaGraphs

    graphs = CudaGraphs()
    graphs.warm(fn)
    replay, _ = graphs.capture(fn)
    return replay


def kernels(fn, device: torch.device) -> list[str]:
    """The CUDA kernels one call ran, by name, the longest first, memsets left out (none on the CPU:
    its ops say nothing of kernels)."""
    if device.type != "cuda":
        return []
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages()
              if e.device_type == torch.autograd.DeviceType.CUDA and not e.key.startswith("Memset")]
    events.sort(key=lambda e: -e.self_device_time_total)
    return [e.key[:90] for e in events][:4]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="768,883,1024,2048", help="chunk rows, comma-separated")
    ap.add_argument("--hidden", type=int, default=1536)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--graphs", action="store_true", help="also time each product replayed from a CUDA graph")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    gen = torch.Generator(device=device).manual_seed(0)
    w = torch.empty(args.vocab, args.hidden, device=device, dtype=dtype).normal_(0, 0.02, generator=gen)
    acc = torch.zeros(args.vocab, args.hidden, device=device, dtype=torch.float32)
    acc16 = torch.zeros(args.vocab, args.hidden, device=device, dtype=dtype)
    rows_out = []
    for rows in (int(r) for r in args.rows.split(",")):
        x = torch.empty(rows, args.hidden, device=device, dtype=dtype).normal_(generator=gen)
        g = torch.empty(rows, args.vocab, device=device, dtype=dtype).normal_(0, 1e-4, generator=gen)
        flops = 2 * rows * args.hidden * args.vocab
        for product, options in layouts(x, w, g, acc, acc16).items():
            for name, fn in options.items():
                with torch.no_grad():
                    try:
                        seconds = timed(fn, device, args.repeats)
                    except RuntimeError as e:  # a form this torch or device lacks
                        rows_out.append({"rows": rows, "product": product, "layout": name, "error": str(e)[:200]})
                        print(f"{rows:>5} {product:<7} {name:<24} failed: {str(e)[:100]}")
                        continue
                    row = {"rows": rows, "product": product, "layout": name, "ms": round(seconds * 1e3, 3),
                           "tflops": round(flops / seconds / 1e12, 1), "kernels": kernels(fn, device)}
                    if args.graphs and device.type == "cuda":
                        replay = timed(graphed(fn), device, args.repeats)
                        row.update({"graphed_ms": round(replay * 1e3, 3), "graphed_tflops": round(flops / replay / 1e12, 1)})
                rows_out.append(row)
                graphed_ms = f" graphed {row['graphed_ms']:.3f} ms" if "graphed_ms" in row else ""
                print(f"{rows:>5} {product:<7} {name:<24} {row['ms']:>8.3f} ms {row['tflops']:>7.1f} TFLOP/s{graphed_ms}  "
                      f"{row['kernels'][:1]}")
    if args.out:
        meta = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
                "dtype": str(dtype), "hidden": args.hidden, "vocab": args.vocab}
        with open(args.out, "w") as f:
            json.dump({**meta, "runs": rows_out}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
