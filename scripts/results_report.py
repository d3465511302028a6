#!/usr/bin/env python
"""docs/results.md's tables and chart from the committed summaries in results/: `ft-score report`
with the runs in the docs' order and their model and method names.

    .venv/bin/python scripts/results_report.py > /tmp/tables.md   # also writes docs/results.png
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
TITLE = "Fine-tuned (blue) vs prompted (grey): SmolLM2-135M, Qwen2.5-Coder 0.5B and 1.5B, one H200"

RUNS = {  # task -> [(summary name, model, method)]
    "viggo": [("ft-smollm2", "SmolLM2-135M-Instruct", "fine-tuned (ft-train)"),
              ("fewshot-smollm2", "SmolLM2-135M-Instruct", "9-shot prompt"),
              ("fewshot-qwen1.5b", "Qwen2.5-Coder-1.5B-Instruct", "9-shot prompt"),
              ("ft-qwen0.5b", "Qwen2.5-Coder-0.5B-Instruct (AWQ GGUF)", "fine-tuned (ft-train)"),
              ("fewshot-qwen0.5b", "Qwen2.5-Coder-0.5B-Instruct (AWQ GGUF)", "9-shot prompt")],
    "sql": [(f"{m}-{part}", model, f"{method}, {part}")
            for part in ("spider", "wikisql")
            for m, model, method in (("ft-smollm2", "SmolLM2-135M-Instruct", "fine-tuned"),
                                     ("fewshot-smollm2", "SmolLM2-135M-Instruct", "few-shot"),
                                     ("fewshot-qwen1.5b", "Qwen2.5-Coder-1.5B-Instruct", "few-shot"),
                                     ("ft-qwen0.5b", "Qwen2.5-Coder-0.5B-Instruct (AWQ GGUF)", "fine-tuned"),
                                     ("fewshot-qwen0.5b", "Qwen2.5-Coder-0.5B-Instruct (AWQ GGUF)", "few-shot"),
                                     ("ft-qwen1.5b", "Qwen2.5-Coder-1.5B-Instruct", "fine-tuned"))],
    "gsm8k": [("ft-smollm2", "SmolLM2-135M-Instruct", "fine-tuned on GSM8K"),
              ("two-stage-smollm2", "SmolLM2-135M-Instruct", "two-stage: MathQA, then GSM8K"),
              ("fewshot-smollm2", "SmolLM2-135M-Instruct", "8-shot CoT prompt"),
              ("fewshot-qwen1.5b", "Qwen2.5-Coder-1.5B-Instruct", "8-shot CoT prompt"),
              ("ft-qwen1.5b", "Qwen2.5-Coder-1.5B-Instruct", "fine-tuned on GSM8K")],
}


def main() -> int:
    args = []
    for task, runs in RUNS.items():
        for run, model, method in runs:
            path = RESULTS / task / f"{run}.summary.json"
            if path.exists():  # labelled by path: run names repeat across tasks (ft-smollm2)
                args += [str(path), "--label", f"{path}={model}|{method}"]
    ft_score = Path(sys.executable).with_name("ft-score")
    return subprocess.call([str(ft_score), "report", *args, "--chart", str(ROOT / "docs" / "results.png"),
                            "--title", TITLE, "-q"])


if __name__ == "__main__":
    sys.exit(main())
