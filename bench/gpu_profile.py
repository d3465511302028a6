#!/usr/bin/env python
"""Where the time goes in one training step and one decode step, on a GPU, without Ray.

    python bench/gpu_profile.py --model-dir CONFIG_AND_TOKENIZER_DIR --records DIR --out OUT [--big DIR]
    just bench-profile        # the same on SmolLM2-135M's config, records made by ft-prep

The model is built from its config with random weights: the speed of a step does not
depend on the weights, so no checkpoint has to travel to the GPU machine. What runs is
ft-train's own micro-step (ft_train.worker.train_step on ft_train.engine.PlainEngine at ZeRO-0:
CausalLMLoss, FlatMaster or bf16 autocast, fused AdamW, gradient clipping, batches from
ft_train.data) and ft-infer's own
hf engine, so the figures are the commands' and not a re-implementation's.

Training: milliseconds per step, real (non-padding) tokens/s and peak memory for each
variant (token budget, layout, fp32 weights under autocast or bf16 weights with fp32
masters, cuDNN attention on or off, torch.compile), one epoch of warm-up then the next
epoch timed, on ViGGO training records; --big DIR adds a second, larger config.
Inference: seconds for the 714 ViGGO validation prompts with ft-infer's hf engine (its
default, a static cache, other batch sizes) and with a naive `model.generate` at batch 128.
A random model never emits the stop token, so every batch decodes all --max-new-tokens
steps: the inference figures are an upper bound for a real model.

torch.profiler tables (top CUDA and CPU operations) for one variant of each go to
OUT/profile_*.txt; the numbers go to OUT/gpu_profile.json and a table to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

DEVICE = "cuda"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else 0.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def random_model(model_dir: str, n_tokens: int, pad_vocab: bool = True):
    """The config's model with random weights, its vocabulary grown to n_tokens as ft-train grows it
    (pad_vocab: rounded up to ft_train.tokens.VOCAB_MULTIPLE rows; else exactly n_tokens)."""
    from ft_train.tokens import embedding_rows
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    config.vocab_size = embedding_rows(n_tokens, config.vocab_size) if pad_vocab else max(config.vocab_size, n_tokens)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    return model


def tokenizer_with_tokens(model_dir: str, records: list[dict]):
    from ft_train.tokens import add_tokens
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    add_tokens(tok, records[0]["special_tokens"])
    return tok


# ---- training --------------------------------------------------------------------------------

def train_variant(name: str, model_dir: str, rows: list[dict], tok, layout: str, batch_size, batch_tokens: int,
                  max_steps: int, compile_: bool = False, autocast: bool = False, cudnn: bool = True,
                  profile_to: Path | None = None, graphs: bool = False, pad_vocab: bool = True,
                  attention: str | None = None, grads_added: bool = False, row_wide_pieces: bool = False,
                  unfilled: bool = False) -> dict:
    """One epoch of warm-up (every batch shape seen once, as in a real run's first epoch),
    then the next epoch's batches timed (at most max_steps of them). graphs: replayed from
    ft-train's step graphs (ft_train.step_graphs, --cuda-graphs), widths cut at its multiple.
    attention (with compile): "math" (SDPA's math backend, which inductor fuses) or "repeat_kv"
    (the key and value heads repeated before SDPA instead of flash attention's own GQA).
    grads_added: the backward adds into FlatMaster's zeroed gradient buffer (ft-train before
    2026-12-06's eighth session) instead of its gradients being copied in. row_wide_pieces: the
    flat shape's pieces sized for a tail as wide as the row (ft-train before the same session).
    unfilled: flat batches cut where the next record does not fit, their gaps not filled from the
    records behind it (ft_train.data.FILL_LOOKAHEAD 0, as before the same session)."""
    from ft_train import data

    lookahead = data.FILL_LOOKAHEAD
    data.FILL_LOOKAHEAD = 0 if unfilled else lookahead
    try:
        with attention_mode(attention):
            return _train_variant(name, model_dir, rows, tok, layout, batch_size, batch_tokens, max_steps, compile_,
                                  autocast, cudnn, profile_to, graphs, pad_vocab, attention, grads_added,
                                  row_wide_pieces)
    finally:
        data.FILL_LOOKAHEAD = lookahead


@contextlib.contextmanager
def attention_mode(mode: str | None):
    """SDPA as `mode` says (train_variant) while a variant compiles and runs; dynamo's caches reset
    first, so no variant replays another's compiled blocks."""
    torch._dynamo.reset()
    if mode is None:
        yield
    elif mode == "math":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        # without inductor's caches: their keys do not hold SDPA's backend, so a graph compiled
        # with flash attention (an earlier variant's, an earlier run's) would be served again
        with sdpa_kernel([SDPBackend.MATH]), torch._inductor.config.patch(force_disable_caches=True):
            yield
    elif mode == "repeat_kv":
        import transformers.integrations.sdpa_attention as sdpa

        gqa = sdpa.use_gqa_in_sdpa
        sdpa.use_gqa_in_sdpa = lambda *args, **kwargs: False
        try:
            yield
        finally:
            sdpa.use_gqa_in_sdpa = gqa
    else:
        raise ValueError(f"attention mode {mode!r}")


def row_wide_shape(batches, multiple: int = 8):
    """The flat shape as ft-train sized it before (pieces for a tail as wide as the row), for comparison."""
    from ft_train.data import round_up
    from ft_train.flat import MIN_PIECE, FlatShape

    sizes = [(len(b), sum(len(seq[0]["ids"]) for seq in b)) for b in batches]
    max_len = max(MIN_PIECE, max(len(seq[0]["ids"]) for b in batches for seq in b))
    n_max, width = max(n for n, _ in sizes), round_up(max(u for _, u in sizes) + 1, multiple)
    while not all(n_max + -(-width // max_len) - n <= width - u for n, u in sizes):
        width += multiple
    return FlatShape(width, n_max + -(-width // max_len), max_len)


def _train_variant(name, model_dir, rows, tok, layout, batch_size, batch_tokens, max_steps, compile_, autocast,
                   cudnn, profile_to, graphs, pad_vocab, attention, grads_added, row_wide_pieces) -> dict:
    from ft_train.config import TrainConfig
    from ft_train.data import batch_width, make_batches, real_tokens
    from ft_train.engine import PlainEngine
    from ft_train.flat import flat_shape
    from ft_train.worker import CausalLMLoss, train_step

    device = torch.device(DEVICE)
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        torch.backends.cuda.enable_cudnn_sdp(cudnn)
    model = random_model(model_dir, len(tok), pad_vocab)
    multiple = 1
    if graphs:
        from ft_train.step_graphs import WIDTH_MULTIPLE, shape_table

        multiple = WIDTH_MULTIPLE if layout == "group" else 1
    cfg = TrainConfig(lr=2e-4, warmup=0.03, batch_size=batch_size, batch_tokens=batch_tokens, layout=layout,
                      compile="on" if compile_ else "off", pad_multiple=multiple)  # warmup: unset (None) means the recipe chooses, which this bench skips
    # autocast: the previous bf16 path, fp32 weights under autocast instead of FlatMaster
    warm = make_batches(rows, layout, batch_size, batch_tokens, cfg.ctx_len, seed=0, multiple=multiple)
    timed = make_batches(rows, layout, batch_size, batch_tokens, cfg.ctx_len, seed=1, multiple=multiple)[:max_steps]
    flat = (row_wide_shape if row_wide_pieces else flat_shape)(warm + timed) if layout == "flat" else None  # as the driver makes it
    engine = PlainEngine(CausalLMLoss(model, flat=flat), cfg, device, 1, total_steps=1000, bf16=DEVICE == "cuda",
                         flat_master=not autocast, overwrite_grads=not grads_added)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    if graphs:
        engine.use_graphs(shape_table([warm, timed], cfg.ctx_len, multiple, flat), pad_id, log)

    def one(batch) -> tuple[int, int]:
        train_step(engine, batch, True, cfg, pad_id, flat)  # ft-train's own micro-step
        return real_tokens(batch), flat.width if flat else len(batch) * batch_width(batch, layout, cfg.ctx_len, multiple)

    t0 = time.perf_counter()
    for batch in warm:
        one(batch)
    sync()
    warm_s = time.perf_counter() - t0
    real = padded = 0
    t0 = time.perf_counter()
    for batch in timed:
        r, p = one(batch)
        real, padded = real + r, padded + p
    sync()
    seconds = time.perf_counter() - t0
    if profile_to is not None:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for batch in timed[:5]:
                one(batch)
            sync()
        write_profile(prof, profile_to, f"training step x5: {name}")
    steps = len(timed)
    n_params = sum(p.numel() for p in model.parameters())
    out = {"name": name, "layout": layout, "batch_size": batch_size, "batch_tokens": batch_tokens,
           "compile": compile_, "autocast": autocast, "cudnn_sdpa": cudnn, "graphs": graphs, "attention": attention,
           "pad_vocab": pad_vocab, "grads_added": grads_added, **({"flat_shape": vars(flat)} if flat else {}),
           **({"graphs_summary": engine.graphs.summary()} if engine.graphs is not None else {}),
           "params": n_params, "steps": steps, "ms_per_step": 1000 * seconds / steps,
           "real_tokens_per_s": real / seconds, "padded_share": 1 - real / padded,
           "real_tokens_per_step": real / steps, "warmup_epoch_s": warm_s, "warmup_steps": len(warm),
           "peak_gib": peak_gib()}
    log(f"train {name}: {out['ms_per_step']:.1f} ms/step, {out['real_tokens_per_s']:,.0f} real tokens/s, "
        f"padding {out['padded_share']:.1%}, peak {out['peak_gib']:.1f} GiB, warm-up epoch {warm_s:.1f}s "
        f"({len(warm)} steps)")
    return out


def write_profile(prof, path: Path, title: str) -> None:
    events = prof.key_averages()
    gpu = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy_ms = sum(e.device_time for e in gpu) / 1000  # kernels' own time (profiled steps together)
    text = [title, f"CUDA kernels launched: {len(gpu)}, their time together: {busy_ms:.1f} ms", "",
            events.table(sort_by="self_cuda_time_total", row_limit=60), "",
            events.table(sort_by="self_cpu_time_total", row_limit=25)]
    path.write_text("\n".join(text) + "\n")


# ---- inference -------------------------------------------------------------------------------

def infer_variant(name: str, engine, records: list[dict], profile_to: Path | None = None) -> dict:
    from ft_infer import Stats, infer

    list(infer(records[:8], engine, window=8))  # warm-up: kernels, allocator, stop criteria
    sync()
    stats = Stats()
    t0 = time.perf_counter()
    out = list(infer(records, engine, window=len(records), stats=stats))
    sync()
    seconds = time.perf_counter() - t0
    if profile_to is not None:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            list(infer(records[:engine.batch_size], engine, window=engine.batch_size))
            sync()
        write_profile(prof, profile_to, f"one decode batch: {name}")
    res = {"name": name, "seconds": seconds, "records": len(out), "completion_tokens": stats.completion_tokens,
           "tokens_per_s": stats.completion_tokens / seconds, "batch_size": engine.batch_size,
           "completions": [r["completion"] for r in out]}
    log(f"infer {name}: {seconds:.2f}s, {res['tokens_per_s']:,.0f} tokens/s")
    return res


def naive_generate(model, tok, records: list[dict], max_new: int, batch: int = 128) -> dict:
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    t0 = time.perf_counter()
    tokens = 0
    for s in range(0, len(records), batch):
        enc = tok([r["prompt"] for r in records[s:s + batch]], return_tensors="pt", padding=True).to(DEVICE)
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id)
        tokens += (gen.shape[1] - enc["input_ids"].shape[1]) * gen.shape[0]
    sync()
    seconds = time.perf_counter() - t0
    log(f"infer naive generate (batch {batch}): {seconds:.2f}s")
    return {"name": f"naive generate, batch {batch}", "seconds": seconds, "completion_tokens": tokens}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True, help="a folder with config.json and the tokenizer, or a .gguf file")
    ap.add_argument("--big", help="a second, larger config folder (training variants only)")
    ap.add_argument("--records", required=True, help="folder with viggo-train.jsonl and viggo-valid.jsonl")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=40, help="timed training steps at most")
    ap.add_argument("--only", help="run only the training variants whose name holds this (or one of these, |-separated)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--parts", default="train,infer")
    ap.add_argument("--limit", type=int, default=None, help="records (a CPU smoke test)")
    ap.add_argument("--device", default="cuda", help="cpu for a smoke test of the script")
    a = ap.parse_args()
    global DEVICE
    DEVICE = a.device
    if a.model_dir.endswith(".gguf"):  # only its config and tokenizer are used
        from ft_common.models import resolve_model

        a.model_dir = resolve_model(a.model_dir).path
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    train_recs = load_jsonl(Path(a.records) / "viggo-train.jsonl")
    valid_recs = load_jsonl(Path(a.records) / "viggo-valid.jsonl")
    train_recs, valid_recs = train_recs[:a.limit], valid_recs[:a.limit]
    report: dict = {"device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu", "torch": torch.__version__, "train": [], "infer": []}
    import transformers

    report["transformers"] = transformers.__version__

    def save():
        (out / "gpu_profile.json").write_text(json.dumps(report, indent=1) + "\n")

    if "train" in a.parts:
        from ft_train.data import tokenize_records

        tok = tokenizer_with_tokens(a.model_dir, train_recs)
        rows, _ = tokenize_records(train_recs, tok, 512, "target")
        variants = [  # name, layout, batch size, batch tokens, compile, autocast, cudnn sdpa, profile file[, graphs[, pad vocab[, attention]]]
            ("group 16k, autocast", "group", None, 16384, False, True, True, None),
            ("group 16k, flat master", "group", None, 16384, False, False, True, "profile_train_group16k.txt"),
            ("group 16k, flat master, no cudnn", "group", None, 16384, False, False, False, None),
            ("group 32k, flat master", "group", None, 32768, False, False, True, None),
            ("group 32k, flat master, no cudnn", "group", None, 32768, False, False, False, None),
            ("pack 8x512, flat master", "pack", 8, 0, False, False, True, None),
            ("group 16k, flat master, compile", "group", None, 16384, True, False, True, "profile_train_compile.txt"),
            # ft-train's plain batch at 1.5B (4,096 tokens; training runs without cuDNN attention), eager
            # and with --compile's blocks: where issue 13's MFU goes (--only "group 4k" --model-dir QWEN_1.5B)
            ("group 4k, flat master, no cudnn", "group", None, 4096, False, False, False, "profile_train_group4k.txt"),
            ("group 4k, flat master, no cudnn, compile", "group", None, 4096, True, False, False,
             "profile_train_group4k_compile.txt"),
            # the 135M plain command's step (6,144-token batches, --compile, --cuda-graphs): where its
            # 24 ms go (--only "group 6k" --model-dir SmolLM2's); the profiler sees the graphs' kernels
            ("group 6k, flat master, no cudnn, compile, graphs", "group", None, 6144, True, False, False,
             "profile_train_group6k_compile_graphs.txt", True),
            ("group 6k, flat master, no cudnn, compile", "group", None, 6144, True, False, False,
             "profile_train_group6k_compile.txt", False),
            # the same graphed step at the vocabulary's own size (ft-train before its rows were padded)
            ("group 6k, flat master, no cudnn, compile, unpadded vocabulary, graphs", "group", None, 6144, True,
             False, False, None, True, False),
            # attention other ways (flash attention's kernels and its GQA sums were 3.4 ms of 22)
            ("group 6k, flat master, no cudnn, compile, graphs, math attention", "group", None, 6144, True,
             False, False, "profile_train_group6k_math_attention.txt", True, True, "math"),
            ("group 6k, flat master, no cudnn, compile, graphs, kv heads repeated", "group", None, 6144, True,
             False, False, None, True, True, "repeat_kv"),
            # the flat layout (ft_train/flat.py: no padding, varlen flash attention), ft-train's plain step
            # on a GPU since 2026-12-06 (--only "flat 6k"; at 1.5B --only "flat 4k")
            ("flat 6k, flat master, no cudnn, compile, graphs", "flat", None, 6144, True, False, False,
             "profile_train_flat6k_compile_graphs.txt", True),
            ("flat 4k, flat master, no cudnn, compile, graphs", "flat", None, 4096, True, False, False,
             "profile_train_flat4k_compile_graphs.txt", True),
            # the same steps as ft-train took them before the eighth session: the backward adding into a
            # zeroed gradient buffer, and (135M) the flat shape's pieces sized for a row-wide tail
            ("flat 6k, flat master, no cudnn, compile, graphs, grads added", "flat", None, 6144, True, False, False,
             None, True, True, None, {"grads_added": True}),
            ("flat 6k, flat master, no cudnn, compile, graphs, row-wide pieces", "flat", None, 6144, True, False,
             False, None, True, True, None, {"row_wide_pieces": True}),
            ("flat 6k, flat master, no cudnn, compile, graphs, unfilled batches", "flat", None, 6144, True, False,
             False, None, True, True, None, {"unfilled": True}),
            ("flat 4k, flat master, no cudnn, compile, graphs, grads added", "flat", None, 4096, True, False, False,
             None, True, True, None, {"grads_added": True}),
        ]
        only = a.only.split("|") if a.only else None
        for name, layout, bs, bt, comp, autocast, cudnn, prof, *more in variants:  # more: graphs, pad_vocab, attention, {other}
            if only and not any(piece in name for piece in only):
                continue
            other = more.pop() if more and isinstance(more[-1], dict) else {}
            report["train"].append(train_variant(name, a.model_dir, rows, tok, layout, bs, bt, a.steps, comp,
                                                 autocast, cudnn, out / prof if prof else None,
                                                 **dict(zip(("graphs", "pad_vocab", "attention"), more, strict=False)),
                                                 **other))
            save()
        if a.big:
            btok = tokenizer_with_tokens(a.big, train_recs)
            brows, _ = tokenize_records(train_recs, btok, 512, "target")
            for name, layout, bs, bt in [("big: group 16k, flat master", "group", None, 16384)]:
                report["train"].append(train_variant(name, a.big, brows, btok, layout, bs, bt, 10))
                save()

    if "infer" in a.parts:
        from ft_infer import GenerationOptions
        from ft_infer.engines.hf import HFEngine

        # The base tokenizer, as in the real benchmark of the base model: <END_A> is a stop string
        # (transformers' StopStringCriteria), not a token.
        model_dir = Path(tempfile.mkdtemp(prefix="ft-random-model-"))
        tok = transformers.AutoTokenizer.from_pretrained(a.model_dir)
        model = random_model(a.model_dir, len(tok))
        model.to(torch.bfloat16).save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        options = GenerationOptions(max_new_tokens=a.max_new_tokens)
        variants = [
            ("hf default", {}, "profile_infer_default.txt"),
            ("hf batch 256", {"batch_size": 256}, None),
            ("hf batch 1024", {"batch_size": 1024}, None),
            ("hf static cache", {"static_cache": True}, None),
        ]
        for name, kw, prof in variants:
            engine = HFEngine(str(model_dir), options, quiet=True, device=DEVICE, **kw)
            engine.load()
            report["infer"].append(infer_variant(name, engine, valid_recs, out / prof if prof else None))
            save()
            del engine
        m = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(DEVICE).eval()
        naive_generate(m, transformers.AutoTokenizer.from_pretrained(model_dir), valid_recs[:8], 8)
        report["infer"].append(naive_generate(m, transformers.AutoTokenizer.from_pretrained(model_dir), valid_recs,
                                              a.max_new_tokens))
        base = report["infer"][0]["completions"]
        for r in report["infer"][1:]:
            if "completions" in r:
                r["differ_from_default"] = sum(x != y for x, y in zip(base, r["completions"], strict=True))
        for r in report["infer"]:
            r.pop("completions", None)
        save()

    print(f"{report['device']}, torch {report['torch']}, transformers {report['transformers']}")
    print("| training variant | ms/step | real tokens/s | padding | peak GiB |")
    print("|---|---:|---:|---:|---:|")
    for r in report["train"]:
        print(f"| {r['name']} | {r['ms_per_step']:.1f} | {r['real_tokens_per_s']:,.0f} | {r['padded_share']:.1%} | "
              f"{r['peak_gib']:.1f} |")
    print("| inference variant | seconds | completion tokens/s | differs from default |")
    print("|---|---:|---:|---:|")
    for r in report["infer"]:
        print(f"| {r['name']} | {r['seconds']:.2f} | {r['completion_tokens'] / r['seconds']:,.0f} | "
              f"{r.get('differ_from_default', '-')} |")


if __name__ == "__main__":
    main()
