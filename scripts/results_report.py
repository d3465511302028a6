#!/usr/bin/env python
"""Tables and the bar chart for docs/results.md, from the committed files in results/.

    .venv/bin/python scripts/results_report.py > /tmp/tables.md   # also writes docs/results.png

Reads results/TASK/NAME.summary.json (ft-score --summary) and NAME.ft-train.json /
NAME.metrics.jsonl (ft-train); prints one Markdown table per task.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"

RUNS = {  # task -> [(summary name, model, method)]
    "viggo": [("ft-smollm2", "SmolLM2-135M-Instruct", "fine-tuned (ft-train)"),
              ("fewshot-smollm2", "SmolLM2-135M-Instruct", "9-shot prompt"),
              ("fewshot-qwen1.5b", "Qwen2.5-Coder-1.5B-Instruct", "9-shot prompt")],
    "sql": [(f"{m}-{part}", model, f"{method}, {part}")
            for part in ("spider", "wikisql")
            for m, model, method in (("ft-smollm2", "SmolLM2-135M-Instruct", "fine-tuned"),
                                     ("fewshot-smollm2", "SmolLM2-135M-Instruct", "few-shot"),
                                     ("fewshot-qwen1.5b", "Qwen2.5-Coder-1.5B-Instruct", "few-shot"))],
    "gsm8k": [("ft-smollm2", "SmolLM2-135M-Instruct", "fine-tuned on GSM8K"),
              ("two-stage-smollm2", "SmolLM2-135M-Instruct", "two-stage: MathQA, then GSM8K"),
              ("fewshot-smollm2", "SmolLM2-135M-Instruct", "8-shot CoT prompt"),
              ("fewshot-qwen1.5b", "Qwen2.5-Coder-1.5B-Instruct", "8-shot CoT prompt")],
}


def training(task: str, run: str) -> str:
    manifest = RESULTS / task / f"{run.rsplit('-spider', 1)[0].rsplit('-wikisql', 1)[0]}.ft-train.json"
    if not manifest.exists():
        return "-"
    m = json.loads(manifest.read_text())
    metrics = [json.loads(line) for line in manifest.with_name(manifest.name.replace(".ft-train.json", ".metrics.jsonl")).read_text().splitlines()]
    tps = statistics.median(r["tokens_per_s"] for r in metrics if "tokens_per_s" in r)
    epochs = m["epochs"]
    wall = epochs[-1]["time"] - metrics[0]["time"] if metrics else 0
    return (f"{len(epochs)} ep, best {m['best']['epoch']} (val ppl {m['best']['val_ppl']:.3f}), "
            f"~{wall:.0f} s, {tps / 1000:.0f}k tok/s")


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = []
    for task, runs in RUNS.items():
        print(f"\n### {task}\n")
        print("| model | method | accuracy | 95% CI | n | prompt tokens/request | training |")
        print("|---|---|---:|---|---:|---:|---|")
        for run, model, method in runs:
            path = RESULTS / task / f"{run}.summary.json"
            if not path.exists():
                continue
            s = json.loads(path.read_text())
            lo, hi = s["ci95"]
            print(f"| {model} | {method} | {100 * s['accuracy']:.1f}% | {100 * lo:.1f}-{100 * hi:.1f}% | {s['n']} "
                  f"| {s['mean_prompt_tokens']:.0f} | {training(task, run)} |")
            bars.append((f"{task}\n{run}", 100 * s["accuracy"], "ft" if "fewshot" not in run else "prompt"))
    fig, ax = plt.subplots(figsize=(13, 4.5))
    colors = ["#1f77b4" if kind == "ft" else "#bbbbbb" for _, _, kind in bars]
    ax.bar(range(len(bars)), [b[1] for b in bars], color=colors)
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Fine-tuned SmolLM2-135M (blue) vs prompted baselines (grey), one H200")
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "results.png", dpi=110)


if __name__ == "__main__":
    main()
