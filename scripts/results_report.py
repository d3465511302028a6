#!/usr/bin/env python
"""docs/results.md's tables and chart from the committed runs in results/: `ft-score report` with the
runs in the docs' order and their model and method names. A run is its scored records
(results/TASK/RUN.scored.jsonl.xz) where committed, else its summary JSON. Each table gets a
`vs MODEL` column (points of accuracy, paired McNemar p) per prompted baseline with scored records:
the 1.5B few-shot run, and each fine-tuned model's own few-shot run. SQL gets a table per part (a
Spider run shares no ids with a WikiSQL baseline), so `ft-score report` runs once per table, and
once more on the runs for the chart (all but NOT_CHARTED's ablations).

    .venv/bin/python scripts/results_report.py > /tmp/tables.md   # also writes docs/results.png
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
TITLE = "Fine-tuned (blue) vs prompted (grey): SmolLM2-135M, Qwen2.5-Coder 0.5B and 1.5B, one H200 or H100"
SMOL, Q05, Q15 = "SmolLM2-135M-Instruct", "Qwen2.5-Coder-0.5B-Instruct (AWQ GGUF)", "Qwen2.5-Coder-1.5B-Instruct"
BASE = "qwen1.5b"  # its few-shot run is every table's baseline; each fine-tuned model's own is another
SQL = [("ft-smollm2", SMOL, "fine-tuned"), ("fewshot-smollm2", SMOL, "few-shot"), ("fewshot-qwen1.5b", Q15, "few-shot"),
       ("ft-qwen0.5b", Q05, "fine-tuned"), ("fewshot-qwen0.5b", Q05, "few-shot"), ("ft-qwen1.5b", Q15, "fine-tuned"),
       ("ft-qwen0.5b-plain", Q05, "fine-tuned, lr 6.3e-5 (the first rule's plain command)"),
       ("ft-qwen0.5b-lr3.3e-5", Q05, "fine-tuned, lr 3.3e-5 (the second rule's plain command)"),
       ("ft-qwen0.5b-lr1e-5", Q05, "fine-tuned, lr 1e-5 (--lr-rule size's plain command)"),
       ("ft-qwen1.5b-plain", Q15, "fine-tuned, lr 2.9e-5 (the first rule's plain command)"),
       ("ft-qwen1.5b-epochs2", Q15, "fine-tuned, lr 2.9e-5, --epochs 2"),
       ("ft-qwen1.5b-lr1e-5", Q15, "fine-tuned, lr 1e-5 (--lr-rule size's plain command)"),
       ("ft-qwen1.5b-lr-loss", Q15, "fine-tuned, plain command (lr from the loss: 9.2e-6)"),
       ("ft-smollm2-lr-loss", SMOL, "fine-tuned, lr from the loss before its 135M fade (4.5e-5)"),
       ("ft-smollm2-lr2e-4", SMOL, "fine-tuned, plain command (lr 2e-4: the loss rule at 135M since 2026-12-06)"),
       ("ft-smollm2-lr-loss-run2", SMOL, "fine-tuned, lr 4.5e-5 again, paired with the row above"),
       ("ft-qwen0.5b-lr-loss", Q05, "fine-tuned, plain command (lr from the loss: 1.6e-5)"),
       ("ft-qwen0.5b-lr-loss-run2", Q05, "fine-tuned, plain command, run 2 (lr 1.6e-5)")]
TABLES = {  # (task, part: a suffix of the run names) -> [(run name, model, method)]
    ("viggo", ""): [("ft-smollm2", SMOL, "fine-tuned (ft-train)"), ("fewshot-smollm2", SMOL, "9-shot prompt"),
                    ("fewshot-qwen1.5b", Q15, "9-shot prompt"), ("ft-qwen0.5b", Q05, "fine-tuned (ft-train)"),
                    ("fewshot-qwen0.5b", Q05, "9-shot prompt"),
                    ("ft-qwen1.5b-plain", Q15, "fine-tuned, lr 2.9e-5 (the first rule's plain command)"),
                    ("ft-qwen1.5b-epochs6", Q15, "fine-tuned, lr 2.9e-5, --epochs 6"),
                    ("ft-qwen1.5b-lr1e-5", Q15, "fine-tuned, lr 1e-5 (--lr-rule size's plain command)"),
                    ("ft-qwen1.5b-lr-loss", Q15, "fine-tuned, plain command (lr from the loss: 3.3e-5)"),
                    ("ft-qwen1.5b-lr5e-5", Q15, "fine-tuned, --lr 5e-5 (diverged)"),
                    ("ft-qwen0.5b-lr-loss", Q05, "fine-tuned, plain command (lr from the loss: 8.5e-5)"),
                    ("ft-qwen0.5b-lr-loss-run2", Q05, "fine-tuned, plain command, run 2 (lr 8.5e-5)")],
    ("sql", "spider"): SQL,
    ("sql", "wikisql"): SQL,
    ("gsm8k", ""): [("ft-smollm2", SMOL, "fine-tuned on GSM8K"), ("two-stage-smollm2", SMOL, "two-stage: MathQA, then GSM8K"),
                    ("fewshot-smollm2", SMOL, "8-shot CoT prompt"), ("fewshot-qwen1.5b", Q15, "8-shot CoT prompt"),
                    ("ft-qwen1.5b", Q15, "fine-tuned on GSM8K"),
                    ("ft-qwen1.5b-plain", Q15, "fine-tuned, lr 2.9e-5 (the first rule's plain command)"),
                    ("two-stage-qwen1.5b", Q15, "two-stage: MathQA, then GSM8K (lr 2.9e-5)"),
                    ("two-stage-value-qwen1.5b", Q15, "two-stage: MathQA `--answer value`, then GSM8K (lr 5e-6)"),
                    ("ft-qwen1.5b-lr1e-5", Q15, "fine-tuned, lr 1e-5 (--lr-rule size's plain command)"),
                    ("ft-qwen1.5b-lr-loss", Q15, "fine-tuned, plain command (lr from the loss: 4.4e-6)"),
                    ("ft-qwen1.5b-lr5e-6", Q15, "fine-tuned, --lr 5e-6"),
                    ("two-stage-value-lr-loss-qwen1.5b", Q15,
                     "two-stage: MathQA `--answer value`, then GSM8K, each stage's lr from its loss (1.2e-5, 3.1e-6)"),
                    ("ft-smollm2-lr-loss", SMOL, "fine-tuned, lr from the loss before its 135M fade (3.5e-5)"),
                    ("ft-smollm2-lr2e-4", SMOL, "fine-tuned, plain command (lr 2e-4: the loss rule at 135M since 2026-12-06)"),
                    ("ft-smollm2-lr-loss-run2", SMOL, "fine-tuned, lr 3.5e-5 again, paired with the row above")],
}


def model_key(run: str) -> str:
    """The model a run name names: ft-qwen1.5b-plain -> qwen1.5b, two-stage-smollm2 -> smollm2."""
    return next(part for part in run.split("-") if part in ("smollm2", "qwen0.5b", "qwen1.5b"))


# Runs in the tables but not the chart: ablations beside a plain run, which the chart would only crowd.
NOT_CHARTED = {"ft-qwen1.5b-epochs6", "ft-qwen1.5b-epochs2", "ft-qwen1.5b-lr5e-5", "ft-qwen0.5b-plain",
               "ft-qwen0.5b-lr3.3e-5", "ft-qwen0.5b-lr1e-5",
               "ft-qwen0.5b-lr-loss-run2",  # the plain command again: the chart keeps its first run
               "ft-smollm2-lr-loss", "ft-smollm2-lr-loss-run2"}  # 135M's lower lrs, beside its plain 2e-4


def table_args(task: str, part: str, runs: list[tuple[str, str, str]]) -> tuple[list[str], list[str], list[str]]:
    """One table's committed runs (paths, each with its --label), its baselines (--against) and the
    runs the chart shows."""
    args, against, charted = [], [], []
    tuned = {model_key(run) for run, _, _ in runs if not run.startswith("fewshot-")} | {BASE}
    for run, model, method in runs:
        name = f"{run}-{part}" if part else run
        scored = RESULTS / task / f"{name}.scored.jsonl.xz"
        path = scored if scored.exists() else RESULTS / task / f"{name}.summary.json"
        if path.exists():  # labelled by path: run names repeat across tasks (ft-smollm2)
            args += [str(path), "--label", f"{path}={model}|{method}"]
            if run not in NOT_CHARTED:
                charted += [str(path), "--label", f"{path}={model}|{method}"]
            if path == scored and run.startswith("fewshot-") and model_key(run) in tuned:
                against += ["--against", str(path)]
    return args, against, charted


def main() -> int:
    ft_score = [str(Path(sys.executable).with_name("ft-score")), "report", "-q"]
    every, tables = [], []
    for (task, part), runs in TABLES.items():
        args, against, charted = table_args(task, part, runs)
        every += charted
        out = subprocess.run([*ft_score, *args, *against], stdout=subprocess.PIPE, text=True, check=True).stdout
        tables.append(out.replace(f"### {task}\n", f"### {task}: {part}\n", 1) if part else out)
    sys.stdout.write("\n".join(tables))
    return subprocess.call([*ft_score, *every, "-o", os.devnull, "--chart", str(ROOT / "docs" / "results.png"),
                            "--title", TITLE])


if __name__ == "__main__":
    sys.exit(main())
