#!/usr/bin/env python
"""GPU training benchmark for ft-train: throughput side by side, and time to a good ViGGO model.

    # on one H100/H200, no network needed (the model is a local file or folder):
    python bench/bench_train.py --mode all --model models/SmolLM2-135M-Instruct.Q4_1.gguf
    python bench/bench_train.py --mode throughput --long 2048 --model /models/Qwen2.5-1.5B
    # a CPU smoke run of every code path, with a tiny random model (minutes):
    python bench/bench_train.py --device cpu --tiny

Modes:

throughput  real-token throughput (tokens/s that are not padding), MFU and peak GPU
            memory, in one run, side by side, on the same ViGGO records, for
              1. ft-train's default (ft-train -m MODEL ... with no tuning flags)
              2. a plain PyTorch bf16 loop (batch 32 records padded per batch, bf16
                 autocast, fused AdamW, eager), the reference the issue quotes
              3. the case study's recipe: every record padded to 512, DeepSpeed ZeRO-3
                 with the optimizer offloaded to the CPU, loss on all tokens
viggo       time to a good ViGGO model: ft-train's default for 10 epochs on the 5,103
            training records (lr 2e-4, as the reference plain loop), then validation
            accuracy (function + attribute types + order) of the best checkpoint by
            greedy decoding. Target: <= 30 s on one H100/H200, accuracy >= 92.3%.
            --with-plain also runs the plain loop for the same 10 epochs (194 s on an H200).

MFU = 6 * parameters * real tokens/s / peak bf16 FLOP/s (989 TFLOP/s for H100 SXM/H200,
--peak-tflops to override). ft-train computes logits only at target tokens, so its
real work per token is a little less than 6N: the figure is conservative for it and
comparable across the three.

On a GPU machine with no network: bring the repository with its .venv built for
CUDA (torch with CUDA, DeepSpeed with its ops prebuilt for the GPU:
TORCH_CUDA_ARCH_LIST=9.0 DS_BUILD_CPU_ADAM=1 DS_BUILD_FUSED_ADAM=1 pip install deepspeed,
or let the case-study run JIT-build cpu_adam, which needs a compiler but no network),
the model fetched beforehand (`just fetch-model` puts the GGUF in models/; or any local
HF folder via --model), and the ViGGO CSVs (--data-dir, default ../shared/data).
The script sets HF_HUB_OFFLINE=1; nothing else is downloaded.

Prints a Markdown table (for docs/benchmarks.md) and writes OUT/bench_train.json.
Each ft-train run is a subprocess, so Ray start-up is counted in its wall time but
not in its tokens/s (taken from metrics.jsonl, median after the first log lines).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# ft-train beside this Python (a venv), else the one on PATH (the GPU host's launchers)
BIN = Path(sys.executable).parent
FT_TRAIN = str(BIN / "ft-train") if (BIN / "ft-train").exists() else (shutil.which("ft-train") or "ft-train")
sys.path.insert(0, str(ROOT / "tests"))  # tiny_model, for --tiny

PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "GH200": 989.4, "A100": 312.0, "L40S": 362.0}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- data -----------------------------------------------------------------------------------

def viggo_records(data_dir: Path, split: str, limit: int | None) -> list[dict]:
    from ft_common.records import new_record
    from ft_common.tasks import get_task

    task = get_task("viggo")
    out = []
    with open(data_dir / "viggo" / f"{split}.csv", newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if limit is not None and i >= limit:
                break
            out.append(new_record(id=f"viggo/{split}/{i}", task="viggo", split=split, format="tokens",
                                  prompt=task.prompt(row["ref"]), target=task.target(row["mr"]),
                                  stop=list(task.stop), special_tokens=list(task.special_tokens),
                                  meta={"reference": row["mr"], "input": row["ref"]}))
    return out


def long_records(records: list[dict], tokens: int, tokenizer_path: str) -> list[dict]:
    """Records of about `tokens` tokens each: many ViGGO sentences in one prompt, their MRs in the target
    (the issue's seq-2048 throughput comparison; the loss stays on the target, as by default)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    out, refs, mrs, n = [], [], [], 0
    for r in records:
        ref, mr = r["meta"]["input"], r["meta"]["reference"]
        k = len(tok.encode(ref + mr, add_special_tokens=False)) + 2
        if n + k > tokens - 8 and refs:
            out.append({**records[0], "id": f"long/{len(out)}",
                        "prompt": "<START_Q>" + " ".join(refs) + "<END_Q><START_A>", "target": "; ".join(mrs) + "<END_A>"})
            refs, mrs, n = [], [], 0
        refs.append(ref)
        mrs.append(mr)
        n += k
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ---- ft-train runs ----------------------------------------------------------------------------

def run_ft_train(model: str, train: Path, valid: Path, out: Path, extra: list[str], device: str) -> dict:
    cmd = [FT_TRAIN, "-m", model, "--train", str(train), "--valid", str(valid), "-o", str(out),
           "--device", device, "-q", *extra]
    log("$ " + " ".join(cmd))
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"ft-train failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps = [x for x in lines if "tokens_per_s" in x]
    # steps 1 and 2 are always logged (the loss before training, the first ETA): time from step 2 on
    steady = [x for x in steps if x["step"] > 2] if len(steps) > 4 else steps
    epochs = [x for x in lines if "val_ppl" in x]
    train_s = (epochs[-1]["time"] - steps[0]["time"]) if steps and epochs else None
    manifest = json.loads((out / "ft-train.json").read_text())
    return {
        "command": " ".join(cmd), "wall_s": wall, "train_s": train_s,
        "tokens_per_s": statistics.median(x["tokens_per_s"] for x in steady) if steady else None,
        "peak_mem_gb": max((x.get("peak_mem_gb") or 0.0 for x in steps), default=None) or None,
        "resolved": manifest["resolved"], "best": result["best"], "best_val_ppl": result["best_val_ppl"],
    }


# ---- the plain PyTorch loop (run in its own process: python bench_train.py --plain-json ...) -----

def plain_loop(args_json: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    a = json.loads(args_json)
    device = torch.device(a["device"])
    records = [json.loads(x) for x in Path(a["train"]).read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(a["model"])
    tok.add_special_tokens({"extra_special_tokens": records[0]["special_tokens"]}, replace_extra_special_tokens=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(a["model"], dtype=torch.float32, attn_implementation="sdpa")
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    model.to(device).train()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=a["lr"], betas=(0.9, 0.95), fused=device.type == "cuda")
    bf16 = device.type == "cuda"
    g = torch.Generator().manual_seed(0)
    rows = []
    for r in records:
        p = tok(r["prompt"])["input_ids"]
        t = tok(r["target"], add_special_tokens=False)["input_ids"]
        rows.append((p + t, len(p)))
    tokens, steps_done, start = 0, 0, None
    epochs = a["epochs"]
    total_steps = a.get("steps") or epochs * ((len(rows) + a["batch"] - 1) // a["batch"])
    warmup = min(5, max(1, total_steps // 2))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.monotonic()
    while steps_done < total_steps:
        order = torch.randperm(len(rows), generator=g).tolist()
        for s in range(0, len(order), a["batch"]):
            batch = [rows[i] for i in order[s:s + a["batch"]]]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), width), tok.pad_token_id)
            labels = torch.full((len(batch), width), -100)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, (x, n_prompt) in enumerate(batch):
                ids[b, :len(x)] = torch.tensor(x)
                labels[b, n_prompt:len(x)] = torch.tensor(x[n_prompt:])
                mask[b, :len(x)] = 1
            ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            steps_done += 1
            if steps_done == warmup:  # warm-up excluded from the throughput
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start, tokens = time.monotonic(), 0
            elif start is not None:
                tokens += int(mask.sum())
            if steps_done >= total_steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    end = time.monotonic()
    out = {"tokens_per_s": tokens / (end - start) if start and end > start else None, "train_s": end - t0,
           "steps": steps_done, "n_params": n_params,
           "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}
    if a.get("save"):
        model.to(torch.bfloat16 if bf16 else torch.float32).save_pretrained(a["save"])
        tok.save_pretrained(a["save"])
        model.generation_config.eos_token_id = tok.convert_tokens_to_ids(records[0]["stop"][0])
        model.generation_config.save_pretrained(a["save"])
    Path(a["result"]).write_text(json.dumps(out))


def run_plain(model_path: str, train: Path, device: str, lr: float, batch: int, epochs: int, steps: int | None,
              work: Path, save: Path | None = None) -> dict:
    result = work / "plain.json"
    spec = {"model": model_path, "train": str(train), "device": device if device != "auto" else "cuda",
            "lr": lr, "batch": batch, "epochs": epochs, "steps": steps, "result": str(result),
            "save": str(save) if save else None}
    log(f"$ plain PyTorch loop: {json.dumps(spec)}")
    start = time.monotonic()
    subprocess.run([sys.executable, __file__, "--plain-json", json.dumps(spec)], check=True)
    out = json.loads(result.read_text())
    out["wall_s"] = time.monotonic() - start
    return out


# ---- ViGGO accuracy (function + attribute types + order) --------------------------------------

def mr_shape(text: str):
    m = re.match(r"\s*(\w+)\s*\(", text)
    return (m.group(1), tuple(re.findall(r"(\w+)\s*\[", text))) if m else None


def viggo_accuracy(ckpt: str, records: list[dict], device: str, batch: int = 1024) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = torch.device("cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    tok = AutoTokenizer.from_pretrained(ckpt, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(
        ckpt, dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32).to(dev).eval()
    try:  # the project's checker (function + attribute set + order), as ft-score scores it
        from ft_score.viggo import ViggoChecker

        checker = ViggoChecker()

        def is_correct(record, text):
            return bool(checker.check(record, text)["correct"])
    except ImportError:  # the same rule, simplified
        def is_correct(record, text):
            return mr_shape(text) is not None and mr_shape(text) == mr_shape(record["meta"]["reference"])

    correct = 0
    for s in range(0, len(records), batch):
        chunk = records[s:s + batch]
        enc = tok([r["prompt"] for r in chunk], return_tensors="pt", padding=True).to(dev)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=96, do_sample=False, pad_token_id=tok.pad_token_id)
        for r, seq in zip(chunk, out[:, enc["input_ids"].shape[1]:], strict=True):
            text = tok.decode(seq, skip_special_tokens=False).split("<END_A>")[0]
            correct += is_correct(r, text)
    return correct / len(records)


# ---- main ------------------------------------------------------------------------------------

def peak_flops(device: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device == "cpu":
        return None
    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    for key, tflops in PEAK_TFLOPS.items():
        if all(part in name for part in key.split()):
            return tflops * 1e12
    return None


def count_params(model_path: str) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path))
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["throughput", "viggo", "all"], default="all")
    ap.add_argument("--model", default=str(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"),
                    help="a local folder or .gguf file (no network needed)")
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--tiny", action="store_true", help="a tiny random Llama and few rows: a smoke test of every path")
    ap.add_argument("--data-dir", default=os.environ.get("FT_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--rows", type=int, default=None, help="training records (default: all 5,103)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs for the throughput runs")
    ap.add_argument("--long", type=int, default=None, metavar="TOKENS",
                    help="throughput on records of about TOKENS tokens (e.g. 2048) instead of ViGGO rows")
    ap.add_argument("--legs", default="default,plain,case", help="throughput: which of default, plain, case to run")
    ap.add_argument("--case-study-rows", type=int, default=None,
                    help="throughput: fewer records for the (slow) case-study run (default: --rows)")
    ap.add_argument("--plain-batch", type=int, default=None, help="plain loop batch (default 32 records, 8 with --long)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--with-plain", action="store_true", help="viggo mode: also the plain loop for 10 epochs")
    ap.add_argument("--ft-args", default="", help="extra flags for ft-train's default run (e.g. '--batch-size 16')")
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one); results in OUT/bench_train.json")
    ap.add_argument("--plain-json", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.plain_json:
        plain_loop(a.plain_json)
        return

    work = Path(a.out or tempfile.mkdtemp(prefix="bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data_dir = Path(a.data_dir)
    if a.tiny:
        from tiny_model import build_tiny_model

        model = str(build_tiny_model(work / "tiny-model"))
        rows, valid_rows, ctx = a.rows or 200, 40, ["--ctx-len", "128"]
        lr, viggo_epochs, tiny_flags = 3e-3, 2, ["--batch-size", "2"]
    else:
        from ft_common.models import resolve_model

        model = resolve_model(a.model).path  # a GGUF file is de-quantized once, here
        rows, valid_rows, ctx = a.rows, None, []
        lr, viggo_epochs, tiny_flags = a.lr, 10, []
    device = a.device
    train_recs = viggo_records(data_dir, "train", rows)
    valid_recs = viggo_records(data_dir, "valid", valid_rows)
    train = write_jsonl(work / "train.jsonl", train_recs)
    case_train = write_jsonl(work / "train-case.jsonl", train_recs[:a.case_study_rows]) if a.case_study_rows else train
    valid = write_jsonl(work / "valid.jsonl", valid_recs)
    plain_batch = a.plain_batch or (8 if a.long else 32)
    if a.long:  # throughput runs read long records; the viggo mode keeps the real rows
        long_train = write_jsonl(work / "train-long.jsonl", long_records(train_recs, a.long, model))
        long_valid = write_jsonl(work / "valid-long.jsonl", long_records(valid_recs, a.long, model))
        ctx = ["--ctx-len", str(a.long + 64)]
    n_params = count_params(model)
    peak = peak_flops(device, a.peak_tflops)
    results: dict = {"model": a.model if not a.tiny else "tiny", "params": n_params, "device": device,
                     "peak_tflops": peak / 1e12 if peak else None, "runs": {}}
    ft_extra = a.ft_args.split() if a.ft_args else []

    def mfu(tps):
        return 6 * n_params * tps / peak if peak and tps else None

    if a.mode in ("throughput", "all"):
        ep = ["--epochs", str(a.epochs), "--lr", str(lr), "--log-every", "2"]
        t_train, t_valid = (long_train, long_valid) if a.long else (train, valid)
        runs = {
            "ft-train default": lambda: run_ft_train(model, t_train, t_valid, work / "ft-default",
                                                     [*ep, *ctx, *tiny_flags, *ft_extra], device),
            "plain PyTorch bf16 loop": lambda: run_plain(model, t_train, device, lr, plain_batch, a.epochs, None, work),
            "case study (pad 512, ZeRO-3, offload)": lambda: run_ft_train(
                model, t_train if a.long else case_train, t_valid, work / "ft-casestudy",
                [*ep, "--pad-to-max", "--ctx-len", str(a.long + 64) if a.long else "512", "--zero", "3", "--offload", "optimizer",
                 "--loss-on", "all", "--batch-size", "16" if not a.tiny else "2"], device),
        }
        legs = dict(zip(["default", "plain", "case"], runs, strict=True))
        for leg in a.legs.split(","):
            name, fn = legs[leg], runs[legs[leg]]
            r = fn()
            r["mfu"] = mfu(r.get("tokens_per_s"))
            results["runs"][name] = r
            log(f"{name}: {r.get('tokens_per_s') or 0:,.0f} tokens/s")

    if a.mode in ("viggo", "all"):
        r = run_ft_train(model, train, valid, work / "ft-viggo",
                         ["--epochs", str(viggo_epochs), "--lr", str(lr), *(ctx if a.tiny else []), *tiny_flags,
                          *ft_extra], device)
        r["val_accuracy"] = viggo_accuracy(r["best"], valid_recs, device)
        r["mfu"] = mfu(r.get("tokens_per_s"))
        results["runs"][f"viggo: ft-train default, {viggo_epochs} epochs"] = r
        if a.with_plain:
            p = run_plain(model, train, device, lr, 32, viggo_epochs, None, work, save=work / "plain-viggo")
            p["val_accuracy"] = viggo_accuracy(str(work / "plain-viggo"), valid_recs, device)
            p["mfu"] = mfu(p.get("tokens_per_s"))
            results["runs"][f"viggo: plain loop, {viggo_epochs} epochs"] = p

    (work / "bench_train.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    log(f"results: {work / 'bench_train.json'}")
    if not a.out:
        shutil.rmtree(work / "ft-default", ignore_errors=True)


def table(results: dict) -> str:
    def f(v, fmt):
        return format(v, fmt) if isinstance(v, int | float) else "-"

    lines = [f"model {results['model']} ({results['params'] / 1e6:.0f}M parameters), device {results['device']}, "
             f"peak {f(results['peak_tflops'], '.0f')} TFLOP/s", "",
             "| run | real tokens/s | MFU | peak memory (GiB) | train s | wall s | val acc | setting |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in results["runs"].items():
        res = r.get("resolved") or {}
        plain = "torch AdamW, bf16 autocast" if results["device"] != "cpu" else "torch AdamW, fp32"
        setting = f"ZeRO-{res['zero']} offload {res['offload']} {res['dtype']}" if res else plain
        lines.append(f"| {name} | {f(r.get('tokens_per_s'), ',.0f')} | {f(r.get('mfu'), '.1%')} | "
                     f"{f(r.get('peak_mem_gb'), '.1f')} | {f(r.get('train_s'), '.1f')} | {f(r.get('wall_s'), '.1f')} | "
                     f"{f(r.get('val_accuracy'), '.1%')} | {setting} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
