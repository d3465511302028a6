"""ft-train's validation decoding (--select-by accuracy) eager and with its decode step replayed from
a CUDA graph (ft_common.decode_graphs; on wherever --cuda-graphs is): the same prompts, greedy, in
one batch as the training worker runs them. Reports seconds per pass (after one untimed pass each),
milliseconds per generated token position, how many completions agree, and (where ft-score has a
checker for the records' task) each mode's accuracy and how many verdicts agree. Needs a CUDA device.

    python bench/bench_decode_graphs.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --valid .carry/data/viggo-valid.jsonl --n 256 --out bench_decode_graphs.json
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a GGUF file or a Hugging Face folder")
    ap.add_argument("--valid", required=True, help="ft-prep records (prompt, target, stop)")
    ap.add_argument("--n", type=int, default=256, help="records (the worker's --eval-samples default)")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--device", default="cuda", help="cuda; cpu only to try the script (no graphs there)")
    ap.add_argument("--out", help="write the results as JSON here too")
    args = ap.parse_args()

    import torch
    import transformers
    from ft_common.decode_graphs import GraphedDecodeStep
    from ft_common.errors import FtError
    from ft_common.jsonl import read_records
    from ft_common.models import resolve_model
    from ft_train.valid_accuracy import checker_for, complete, default_max_new_tokens, sample

    path = resolve_model(args.model).path
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    records = sample(list(read_records(args.valid)), args.n)
    specials = sorted({t for r in records for t in r.get("special_tokens", [])})
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    gpu = args.device == "cuda"
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if gpu else torch.float32)
    model.to(args.device)
    model.resize_token_embeddings(len(tokenizer))
    stop_id = tokenizer.convert_tokens_to_ids(records[0]["stop"][0])
    new = default_max_new_tokens(tokenizer, records)
    prompts = [r["prompt"] for r in records]
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    out = {"model": args.model, "gpu": torch.cuda.get_device_name() if gpu else "cpu", "n": len(prompts),
           "max_new_tokens": new}
    texts = {}
    for mode in ("eager", "graphs"):
        graphed = GraphedDecodeStep(model) if mode == "graphs" and gpu else None
        times = []
        for _ in range(args.passes + 1):  # the first untimed: kernel choices, the allocator
            sync()
            t0 = time.perf_counter()
            texts[mode] = complete(model, tokenizer, prompts, stop_id, new, batch_size=len(prompts),
                                   graphed=graphed)
            sync()
            times.append(time.perf_counter() - t0)
        s = sorted(times[1:])[len(times[1:]) // 2]
        positions = max(len(tokenizer(t)["input_ids"]) for t, _ in texts[mode]) + 1
        out[mode] = {"s_per_pass": round(s, 3), "ms_per_position": round(1000 * s / positions, 2),
                     **({"failed": graphed.failed} if graphed is not None and graphed.failed else {})}
    out["same_completions"] = sum(a == b for a, b in zip(texts["eager"], texts["graphs"], strict=True))
    checker = checker_for(records)
    if checker is not None:  # what checkpoint selection reads: the task checker's verdicts
        def correct(record, text, reason) -> bool:
            try:
                return bool(checker.score({**record, "completion": text, "finish_reason": reason})["correct"])
            except FtError:  # a record the checker refuses counts as wrong, as in valid_accuracy
                return False

        with checker:
            verdicts = {mode: [correct(r, *done) for r, done in zip(records, texts[mode], strict=True)]
                        for mode in texts}
        for mode, marks in verdicts.items():
            out[mode]["accuracy"] = round(sum(marks) / len(marks), 4)
        out["same_verdicts"] = sum(a == b for a, b in zip(verdicts["eager"], verdicts["graphs"], strict=True))
    print(json.dumps(out))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
