"""Compile time and step time of a training step: eager, the whole model torch.compile'd, and
ft-train's --compile (each transformer block, ft_train/compile.py).

Each mode runs in a fresh process with an empty inductor cache (cold compiles), forward + backward of a few batch
shapes in the order given, random token ids, the model's own loss; seconds per step.

    python bench/bench_compile.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf
    python bench/bench_compile.py --model M --device cuda --dtype bf16 --shapes 16x384,16x384,12x512
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("eager", "whole", "blocks")


def run_mode(mode: str, model_path: str, shapes: list[tuple[int, int]], device: str, dtype: str) -> list[dict]:
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_path, dtype=getattr(torch, dtype), attn_implementation="sdpa").to(device).train()
    forward = model
    if mode == "whole":
        forward = torch.compile(model)
    elif mode == "blocks":
        from ft_train.compile import compile_blocks

        compile_blocks(model)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for batch, length in shapes:
        ids = torch.randint(0, model.config.vocab_size, (batch, length), generator=gen).to(device)
        t0 = time.perf_counter()
        loss = forward(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        rows.append({"shape": f"{batch}x{length}", "seconds": round(time.perf_counter() - t0, 3),
                     "loss": round(loss.item(), 5)})
        model.zero_grad(set_to_none=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="what ft-train's -m takes: a folder or a .gguf file")
    ap.add_argument("--shapes", default="2x64,2x64,2x96,3x80,2x64", help="batch x length, in order")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one mode, print JSON
    a = ap.parse_args()
    shapes = [tuple(int(x) for x in s.split("x")) for s in a.shapes.split(",")]
    if not a.one:  # a .gguf is de-quantized once (ft-common's resolver), then every mode loads the folder
        from ft_common.models import resolve_model

        a.model = resolve_model(a.model).path
    if a.one:
        print(json.dumps(run_mode(a.one, a.model, shapes, a.device, a.dtype)))
        return
    results = {}
    for mode in a.modes.split(","):
        args = ["--model", a.model, "--shapes", a.shapes, "--device", a.device, "--dtype", a.dtype]
        with tempfile.TemporaryDirectory() as cache:  # cold: no compiled code from an earlier run
            proc = subprocess.run([sys.executable, __file__, "--one", mode, *args], capture_output=True,
                                  text=True, env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache})
        if proc.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{proc.stderr[-2000:]}")
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    print("| mode | " + " | ".join(r["shape"] for r in next(iter(results.values()))) + " |")
    print("|---|" + "---:|" * len(shapes))
    for mode, rows in results.items():
        print(f"| {mode} | " + " | ".join(f"{r['seconds']:.1f}" for r in rows) + " |")
    if a.out:
        Path(a.out).write_text(json.dumps({"model": a.model, "device": a.device, "dtype": a.dtype,
                                           "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
