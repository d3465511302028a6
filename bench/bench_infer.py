"""Benchmark ft-infer's local engines on the ViGGO validation records (GPU; CPU for a smoke test).

    python bench/bench_infer.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --records valid.jsonl --out runs/bench_infer.json
    python bench/bench_infer.py --model /tmp/tiny --limit 24 --device cpu --out /tmp/b.json  # smoke test

Records are `ft-prep viggo --split valid` output (prompts `<START_Q>...<END_Q><START_A>`,
stop `<END_A>`); without --records they are built from the ViGGO valid.csv the same way.
Runs, each after a warm-up on a few records and with the model already loaded:

- naive: `model.generate` on batches of 128 in input order, left padding, greedy;
- hf:    ft-infer's hf engine (length-sorted batches, own decode loop), as the CLI runs it;
- hf-static: the same with `--static-cache` (a preallocated KV cache of fixed shape);
- hf-compile: the same with `--compile` (static KV cache, CUDA-graph decode step; not by default:
          the compile time is part of what is measured, after one warm-up batch shape);
- vllm:  ft-infer's vllm engine, when vllm is importable.

For each: wall seconds, records/s, completion tokens/s; then how many completions differ
from the naive baseline's (greedy decoding: they should not, up to bf16 rounding), with
the first few differences. The JSON result goes to --out.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

from ft_common.models import resolve_model
from ft_common.tasks import END_A
from ft_common.tasks.viggo import TASK as VIGGO
from ft_infer import GenerationOptions, Stats, infer
from ft_infer.engines.hf import HFEngine, resolve_dtype
from ft_infer.stops import finish, plan_stops
from ft_infer.types import to_request

VIGGO_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "viggo" / "valid.csv"


def load_records(path: str | None, limit: int | None) -> list[dict]:
    if path:
        with open(path, encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh if line.strip()]
    else:
        with open(VIGGO_CSV, newline="", encoding="utf-8") as fh:
            records = [{"id": f"viggo/valid/{i}", "prompt": VIGGO.prompt(row["ref"]), "stop": [END_A]}
                       for i, row in enumerate(csv.DictReader(fh))]
    return records[:limit] if limit else records


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_naive(engine: HFEngine, records: list[dict], options: GenerationOptions, batch_size: int) -> list[dict]:
    """The baseline: `model.generate`, batches of `batch_size` in input order, left padding."""
    import torch
    from transformers import StoppingCriteriaList, StopStringCriteria

    tok, model = engine.tokenizer, engine.model
    if tok.pad_token is None:  # the tokenizer must pad for a batched generate
        tok.pad_token_id = engine.pad_id
    stops = tuple(records[0].get("stop", ()))
    plan = plan_stops(tok, stops, engine.eos)
    eos = sorted(plan.token_ids)
    # Built once: generate(stop_strings=...) would rebuild it (seconds for a 49k vocabulary) every call.
    criteria = StoppingCriteriaList([StopStringCriteria(tok, list(plan.strings))] if plan.strings else [])
    out = []
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        enc = tok([r["prompt"] for r in batch], return_tensors="pt", padding=True).to(engine.device)
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=options.max_new_tokens, do_sample=False,
                                 eos_token_id=eos, pad_token_id=engine.pad_id, stopping_criteria=criteria)
        width = enc["input_ids"].shape[1]
        for row, record in enumerate(batch):
            ids = gen[row, width:].tolist()
            ids = _until_text_stop(tok, _strip_padding(ids, engine.pad_id, plan.token_ids), plan.strings)
            result = finish(tok, ids, plan, int(enc["attention_mask"][row].sum()))
            out.append({**record, **result.fields()})
    return out


def _until_text_stop(tok, ids: list[int], strings: tuple[str, ...]) -> list[int]:
    # generate pads a row after its stop string; keep the ids up to the token that completed it,
    # so token counts compare with the engines' (which stop there).
    if strings and any(s in tok.decode(ids, skip_special_tokens=False) for s in strings):
        for k in range(1, len(ids) + 1):
            if any(s in tok.decode(ids[:k], skip_special_tokens=False) for s in strings):
                return ids[:k]
    return ids


def _strip_padding(ids: list[int], pad: int, stop_ids) -> list[int]:
    # generate pads finished rows with pad; a row that stopped on a stop id is cut there by finish().
    if pad in stop_ids:
        return ids
    while ids and ids[-1] == pad:
        ids = ids[:-1]
    return ids


def timed(name: str, fn, records: list[dict], device: str) -> dict:
    fn(records[: min(8, len(records))])  # warm-up: CUDA context, kernels, allocator
    sync(device)
    start = time.perf_counter()
    out = fn(records)
    sync(device)
    seconds = time.perf_counter() - start
    tokens = sum(r["completion_tokens"] for r in out)
    result = {"engine": name, "seconds": round(seconds, 3), "records": len(out),
              "records_per_s": round(len(out) / seconds, 2), "completion_tokens": tokens,
              "tokens_per_s": round(tokens / seconds, 1),
              "finish_stop": sum(r["finish_reason"] == "stop" for r in out)}
    print(f"{name:>10}: {seconds:7.2f}s  {result['records_per_s']:8.1f} records/s  "
          f"{result['tokens_per_s']:9.1f} tokens/s  ({tokens} tokens)", file=sys.stderr, flush=True)
    return {"summary": result, "outputs": out}


def compare(base: list[dict], other: list[dict], show: int = 3) -> dict:
    diffs = [(a["id"], a["completion"], b["completion"]) for a, b in zip(base, other, strict=True)
             if a["completion"] != b["completion"]]
    return {"mismatches": len(diffs),
            "examples": [{"id": i, "naive": a[:200], "engine": b[:200]} for i, a, b in diffs[:show]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model folder, .gguf file or hub id")
    ap.add_argument("--records", help="ft-prep viggo --split valid output (default: built from valid.csv)")
    ap.add_argument("--out", required=True, help="write the JSON result here")
    ap.add_argument("--limit", type=int, default=None, help="use the first N records")
    ap.add_argument("--engines", default="naive,hf,vllm", help="comma list of naive, hf, hf-static, hf-compile, vllm")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=None, help="hf engine batch (default: its own)")
    ap.add_argument("--naive-batch-size", type=int, default=128)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    ap.add_argument("--keep-outputs", action="store_true", help="also write every completion to the JSON")
    args = ap.parse_args()

    import torch

    records = load_records(args.records, args.limit)
    for i, record in enumerate(records):  # a bad --records file fails before any timing
        to_request(record, i)
    options = GenerationOptions(max_new_tokens=args.max_new_tokens)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    resolved = resolve_model(args.model)

    t0 = time.perf_counter()
    hf = HFEngine(resolved.path, options, batch_size=args.batch_size, device=device, dtype=args.dtype, quiet=True)
    hf.load()
    load_seconds = time.perf_counter() - t0
    report = {
        "model": args.model, "records": len(records), "max_new_tokens": args.max_new_tokens,
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu",
        "dtype": str(resolve_dtype(args.dtype, device)).removeprefix("torch."),
        "hf_batch_size": hf.batch_size, "naive_batch_size": args.naive_batch_size,
        "torch": torch.__version__, "load_seconds": round(load_seconds, 2), "runs": [], "compare": {},
    }
    print(f"{len(records)} records, {args.model} on {report['device']} ({report['dtype']}), "
          f"max {args.max_new_tokens} new tokens", file=sys.stderr)

    outputs = {}
    if "naive" in engines:
        run = timed("naive", lambda rs: run_naive(hf, rs, options, args.naive_batch_size), records, device)
        report["runs"].append(run["summary"])
        outputs["naive"] = run["outputs"]
    if "hf" in engines:
        run = timed("hf", lambda rs: list(infer(rs, hf, window=max(len(rs), 1), stats=Stats())), records, device)
        report["runs"].append(run["summary"])
        outputs["hf"] = run["outputs"]
    for name, flags in (("hf-static", {"static_cache": True}), ("hf-compile", {"compile": True})):
        if name not in engines:
            continue
        variant = HFEngine(resolved.path, options, batch_size=args.batch_size, device=device, dtype=args.dtype,
                           quiet=True, **flags)
        variant.load()
        run = timed(name, lambda rs, e=variant: list(infer(rs, e, window=max(len(rs), 1))), records, device)
        report["runs"].append(run["summary"])
        outputs[name] = run["outputs"]
        del variant
    if "vllm" in engines:
        if importlib.util.find_spec("vllm") is None or not device.startswith("cuda"):
            report["vllm"] = "skipped: vllm not importable or no GPU"
            print("  vllm: skipped (not importable or no GPU)", file=sys.stderr)
        else:
            from ft_infer.engines.vllm import VLLMEngine

            del hf.model
            torch.cuda.empty_cache()
            vllm_engine = VLLMEngine(resolved.path, options, dtype=report["dtype"], quiet=True)
            t0 = time.perf_counter()
            vllm_engine.load()
            report["vllm_load_seconds"] = round(time.perf_counter() - t0, 2)
            run = timed("vllm", lambda rs: list(infer(rs, vllm_engine, window=max(len(rs), 1))), records, device)
            report["runs"].append(run["summary"])
            outputs["vllm"] = run["outputs"]
    base = "naive" if "naive" in outputs else next(iter(outputs), None)
    for name, out in outputs.items():
        if name != base:
            report["compare"][f"{name}_vs_{base}"] = compare(outputs[base], out)
            print(f"  {name} vs {base}: {report['compare'][f'{name}_vs_{base}']['mismatches']} of "
                  f"{len(out)} completions differ", file=sys.stderr)
    if args.keep_outputs:
        report["outputs"] = {k: [{"id": r["id"], "completion": r["completion"]} for r in v] for k, v in outputs.items()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
