"""Time to accuracy: what ft-train's plain command gives, against fixed settings, per task.

Each run is the user's pipeline: `ft-train` (timed from the command's start to its exit), then
`ft-infer` on the task's validation records with the best checkpoint and `ft-score`. One JSON
entry per run, appended to --out as it finishes (a cut-short call keeps what it measured):

    {"task", "model", "command", "flags", "optimizer_steps", "train_s", "wall_s",
     "valid_accuracy", "n_valid", "gpu", ...}

train_s is the workers' training time from the manifest (first step to the last epoch's end, less
the validation passes); wall_s is ft-train's command, start to exit. A two-stage run (FIRST_STAGE,
the case study's MathQA -> GSM8K) counts both stages' steps and seconds, its first stage under "stage1".

    python bench/time_to_accuracy.py --data .carry/data --model M.gguf --runs viggo-plain,viggo-old \
        --out results/bench/time_to_accuracy.json --work /tmp/tta

The record files are scripts/make_gpu_data.sh's. `--list` prints the runs. `--engines hf,vllm`
also serves each best checkpoint with both engines (float32 by default) on the first validation
file and records each one's seconds and accuracy and the share of records with the same verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

# task -> training file, validation file for training, files to generate for (the first is scored
# here; the rest are kept for scoring elsewhere, e.g. Spider, whose databases stay on the CPU host),
# ft-infer's --max-new-tokens, ft-score's arguments.
TASKS = {
    "viggo": ("viggo-train", "viggo-valid", ["viggo-valid"], 128, ["viggo", "--extract", "strict"]),
    "sql": ("sql-train", "sql-valid-wikisql", ["sql-valid-wikisql", "sql-valid-spider"], 160, ["sql"]),
    "gsm8k": ("gsm8k-train", "gsm8k-valid", ["gsm8k-valid"], 320, ["gsm8k", "--extract", "strict"]),
}

# name -> (task, flags). "plain" is the README's command; the others are the fixed settings it replaces.
RUNS = {
    "viggo-plain": ("viggo", []),
    "viggo-plain-again": ("viggo", []),  # the same after another run: inductor's compiled code cached
    "viggo-old-default": ("viggo", ["--lr", "1e-4", "--batch-tokens", "24576", "--epochs", "10", "--warmup", "0.03",
                                    "--select-by", "ppl"]),
    "viggo-reproduce": ("viggo", ["--lr", "2e-4", "--batch-tokens", "24576", "--epochs", "10", "--warmup", "0.03",
                                  "--select-by", "ppl"]),
    "viggo-plain-ppl": ("viggo", ["--select-by", "ppl"]),
    "viggo-compile": ("viggo", ["--compile"]),  # the plain command with its blocks compiled (ft_train/compile.py)
    "viggo-compile-again": ("viggo", ["--compile"]),  # the same run after it: inductor's compiled code cached
    # compiled blocks inside the step graphs (their first capture failed until transformers' causal
    # mask under capture was turned off, 2026-12-06); -again: the same run with inductor's cache warm
    "viggo-compile-graphs": ("viggo", ["--compile", "--cuda-graphs", "on"]),
    "viggo-compile-graphs-again": ("viggo", ["--compile", "--cuda-graphs", "on"]),
    # past --compile auto's threshold (10.8M tokens: auto compiles), and the same run not compiled
    "viggo-epochs30": ("viggo", ["--epochs", "30"]),
    "viggo-epochs30-eager": ("viggo", ["--epochs", "30", "--compile", "off"]),
    "viggo-ray": ("viggo", ["--launch", "ray"]),  # the plain command on a Ray worker process, as before
    "viggo-lr4e-4": ("viggo", ["--lr", "4e-4"]),
    "viggo-11k-lr3e-4": ("viggo", ["--lr", "3e-4", "--batch-tokens", "11264"]),
    "viggo-240": ("viggo", ["--batch-tokens", "15360"]),  # the recipe at ~240 steps (TARGET_STEPS ~250)
    "viggo-w8": ("viggo", ["--pad-multiple", "8"]),  # 18 distinct batch shapes in epoch 1 instead of 59
    "viggo-900": ("viggo", ["--batch-tokens", "4096"]),  # ~900 steps: with CUDA graphs a step costs less
    "viggo-epochs6": ("viggo", ["--epochs", "6"]),  # at 1.5B the recipe's 3 epochs ended still improving (98.2%)
    # fewer tokens for issue 13's 20 s: the recipe's ~600 steps over fewer epochs, and 6 epochs at the 10-epoch batch
    "viggo-epochs8": ("viggo", ["--epochs", "8"]),
    "viggo-epochs6-6k": ("viggo", ["--epochs", "6", "--batch-tokens", "6144"]),
    "viggo-eager": ("viggo", ["--cuda-graphs", "off"]),  # the plain command without CUDA graphs (before 2026-12-05 pm)
    "sql-eager": ("sql", ["--cuda-graphs", "off"]),  # the same for SQL
    "sql-plain": ("sql", []),
    # the group layout, the plain command's before the flat layout became auto's choice on a GPU
    "viggo-group": ("viggo", ["--layout", "group"]),
    "sql-group": ("sql", ["--layout", "group"]),
    "gsm8k-group": ("gsm8k", ["--layout", "group"]),
    "viggo-flat-5k": ("viggo", ["--batch-tokens", "5120"]),  # flat at about the group layout's step count
    "sql-plain-ppl": ("sql", ["--select-by", "ppl"]),  # 2026-12-05: accuracy on 256 records chose epoch 1
    "sql-1200": ("sql", ["--batch-tokens", "3072"]),  # about the tuned run's 1,250 steps, the recipe's lr
    "sql-epochs2": ("sql", ["--epochs", "2"]),  # the recipe's lr and batch over 2 epochs (Spider plateaued at 2 before)
    "sql-tuned": ("sql", ["--epochs", "2", "--lr", "2e-4", "--batch-size", "32", "--warmup", "0.03", "--select-by", "ppl"]),
    "gsm8k-plain": ("gsm8k", []),
    "gsm8k-tuned": ("gsm8k", ["--epochs", "3", "--lr", "1e-4", "--batch-size", "32", "--warmup", "0.03",
                              "--select-by", "ppl"]),
    "gsm8k-lr1e-5": ("gsm8k", ["--lr", "1e-5"]),  # 2026-12-05: at 1.5B the plain lr (2.9e-5) fell below 8-shot
    "gsm8k-lr5e-6": ("gsm8k", ["--lr", "5e-6"]),
    "sql-lr1e-5": ("sql", ["--lr", "1e-5"]),
    "viggo-lr1e-5": ("viggo", ["--lr", "1e-5"]),
    "viggo-lr5e-5": ("viggo", ["--lr", "5e-5"]),  # at 1.5B ViGGO lost at 1e-5: does it gain above 2.9e-5?
    # At 1.5B: 5e-5 diverged by step 40; between it and 2.9e-5 (98.2%), with a longer warmup.
    "viggo-lr4e-5-warmup10": ("viggo", ["--lr", "4e-5", "--warmup", "0.1"]),
    "sql-lr5e-6": ("sql", ["--lr", "5e-6"]),  # SQL's best lr is not bracketed below 1e-5 yet
    "gsm8k-lr2e-6": ("gsm8k", ["--lr", "2e-6"]),  # nor GSM8K's below 5e-6
    "gsm8k-two-stage": ("gsm8k", []),  # the case study's MathQA -> GSM8K, both stages the plain command
    "gsm8k-two-stage-lr5e-6": ("gsm8k", ["--lr", "5e-6"]),  # the same at GSM8K's best single-stage lr
    "gsm8k-two-stage-value-lr5e-6": ("gsm8k", ["--lr", "5e-6"]),  # stage 1 on MathQA's `#### <number>` form
    "gsm8k-two-stage-value-lr-loss": ("gsm8k", ["--lr-rule", "loss"]),  # each stage its lr from its loss
    # --lr-rule loss: each task's lr from its loss before training (the default since 2026-12-06, when these ran)
    "viggo-lr-loss": ("viggo", ["--lr-rule", "loss"]),
    "sql-lr-loss": ("sql", ["--lr-rule", "loss"]),
    "gsm8k-lr-loss": ("gsm8k", ["--lr-rule", "loss"]),
    # --lr-rule size: the rule before it (2e-4 at 135M, 1e-5 from 0.63B up), beside a plain run
    "viggo-lr-size": ("viggo", ["--lr-rule", "size"]),
    "sql-lr-size": ("sql", ["--lr-rule", "size"]),
    "gsm8k-lr-size": ("gsm8k", ["--lr-rule", "size"]),
}

# run -> its first stage's training file: the run first fine-tunes the model on it (validated on the
# task's validation file), then fine-tunes that stage's best checkpoint on the task's own training file.
FIRST_STAGE = {"gsm8k-two-stage": "mathqa-train", "gsm8k-two-stage-lr5e-6": "mathqa-train",
               "gsm8k-two-stage-value-lr5e-6": "mathqa-value-train", "gsm8k-two-stage-value-lr-loss": "mathqa-value-train"}


def gpu_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def train_seconds(manifest: dict) -> float | None:
    """The workers' training time: the epochs' train_s (ft-train's epoch rows), validation not included."""
    times = [e.get("train_s") for e in manifest["epochs"]]
    return round(sum(times), 1) if times and None not in times else None


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def median(values: list[float]) -> float | None:
    values = sorted(values)
    return round(values[len(values) // 2]) if values else None


def train_once(name: str, model: str, train: str, valid: str, flags: list, args) -> tuple[list, int, float]:
    """One ft-train command into WORK/NAME (its log WORK/NAME.train.log): (command, rc, wall seconds)."""
    data, work = Path(args.data), Path(args.work)
    out = work / name
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    cmd = ["ft-train", "-m", model, "--train", str(data / f"{train}.jsonl"),
           "--valid", str(data / f"{valid}.jsonl"), "-o", str(out), *flags, *args.extra]
    run_cmd, env = cmd, None
    if name in args.record and shutil.which("script"):
        # The user's view: ft-train on a terminal (a pty), its stdout and stderr as drawn, in a typescript.
        run_cmd = ["script", "-qefc", shlex.join(cmd), str(work / f"{name}.terminal.txt")]
        env = {**os.environ, "COLUMNS": "100", "LINES": "30", "TERM": "xterm-256color"}
    t0 = time.time()
    with open(work / f"{name}.train.log", "w") as err, open(work / f"{name}.train.json", "w") as so:
        rc = subprocess.run(run_cmd, stdout=so, stderr=err, env=env).returncode
    return cmd, rc, time.time() - t0


EPOCH_KEYS = ("epoch", "train_s", "eval_s", "val_ppl", "val_accuracy", "val_n", "val_gen_s")
KEPT_FILES = ("ft-train.json", "metrics.jsonl", "curve.png", "ft-train.log")


def per_epoch(manifest: dict) -> list[dict]:
    return [{k: e.get(k) for k in EPOCH_KEYS} for e in manifest["epochs"]]


def keep_files(work: Path, name: str) -> None:
    """WORK/NAME's manifest, metrics, curve and log copied beside it as WORK/NAME.FILE (what a phase
    packs: its checkpoints stay out)."""
    for f in KEPT_FILES:
        if (work / name / f).exists():
            shutil.copy(work / name / f, work / f"{name}.{f}")


def run(name: str, args, gpu: str) -> dict:
    task, flags = RUNS[name]
    train, valid, evals, max_new, score_args = TASKS[task]
    data, work = Path(args.data), Path(args.work)
    out, model, first = work / name, args.model, None
    if name in FIRST_STAGE:  # the first stage's best checkpoint is the second's model; times and steps add up
        cmd, rc, wall = train_once(f"{name}-stage1", args.model, FIRST_STAGE[name], valid, flags, args)
        first = {"command": shlex.join(cmd), "rc": rc, "wall_s": round(wall, 1)}
        if rc != 0:
            return {"name": name, "task": task, "model": Path(args.model).name, "flags": flags, "rc": rc,
                    "stage1": first, "gpu": gpu}
        stage1 = json.loads((work / f"{name}-stage1" / "ft-train.json").read_text())
        first.update({"optimizer_steps": stage1["resolved"].get("total_steps"), "train_s": train_seconds(stage1),
                      "best_epoch": stage1["best"]["epoch"], "timing": stage1.get("timing"),
                      "per_epoch": per_epoch(stage1)})
        keep_files(work, f"{name}-stage1")
        model = str(work / f"{name}-stage1" / "best")
    cmd, rc, wall = train_once(name, model, train, valid, flags, args)
    entry = {"name": name, "task": task, "model": Path(args.model).name, "command": shlex.join(cmd),
             "flags": flags, "rc": rc, "wall_s": round(wall, 1), "gpu": gpu}
    if first is not None:
        entry["stage1"] = first
    if rc != 0:
        return entry
    manifest = json.loads((out / "ft-train.json").read_text())
    entry.update({
        "optimizer_steps": manifest["resolved"].get("total_steps"),
        "epochs_run": len(manifest["epochs"]),
        "best_epoch": manifest["best"]["epoch"],
        "train_s": train_seconds(manifest),
        "eval_s": round(sum(e.get("eval_s", 0) for e in manifest["epochs"]), 1),
        "recipe": manifest["resolved"].get("recipe"),
        "launch": manifest["resolved"].get("launch"),  # local: in ft-train's process; ray: a worker process
        "timing": manifest.get("timing"),
        "peak_mem_gb": max((m.get("peak_mem_gb", 0) for m in read_jsonl(out / "metrics.jsonl")), default=None),
        # the first window of steps left out (shapes captured, kernels tuned), as are the lines
        # of steps 1 and 2 (always logged: the loss before training, the first ETA)
        "tokens_per_s_median": median([m["tokens_per_s"] for m in read_jsonl(out / "metrics.jsonl")
                                       if "tokens_per_s" in m and m["step"] > 2][1:]),
        "per_epoch": per_epoch(manifest),
    })
    for i, part in enumerate(evals):
        comp = work / f"{name}.{part}.jsonl"
        t1 = time.time()
        # hf engine: the same engine as every earlier row, whether or not vllm is importable
        subprocess.run(["ft-infer", "-q", "--engine", "hf", "-m", str(out / "best"), str(data / f"{part}.jsonl"), "-o", str(comp),
                        "--max-new-tokens", str(max_new)], check=True)
        entry.setdefault("infer_s", {})[part] = round(time.time() - t1, 1)
        if i == 0:
            summary = work / f"{name}.{part}.summary.json"
            subprocess.run(["ft-score", *score_args, str(comp), "-q", "-o", str(work / f"{name}.{part}.scored.jsonl"),
                            "--summary", str(summary)], check=True)
            s = json.loads(summary.read_text())
            entry.update({"valid_accuracy": s["accuracy"], "n_valid": s["n"], "valid_file": part})
    keep_files(work, name)
    if first is not None:  # the run's cost is both stages'
        entry["wall_s"] = round(entry["wall_s"] + first["wall_s"], 1)
        entry["optimizer_steps"] = (entry["optimizer_steps"] or 0) + (first["optimizer_steps"] or 0)
        if entry["train_s"] is not None and first["train_s"] is not None:
            entry["train_s"] = round(entry["train_s"] + first["train_s"], 1)
    return entry


def compare_engines(name: str, args) -> dict:
    """Run `name`'s best checkpoint served by each of --engines in --engine-dtype on its task's first
    validation file: seconds, accuracy, and against the first engine the share of records with the
    same verdict (`ft-score compare`: both right or both wrong). A failed or timed-out step is
    recorded (its rc), never fatal."""
    task = RUNS[name][0]
    _, _, evals, max_new, score_args = TASKS[task]
    work, results, first = Path(args.work), {}, None
    records, checkpoint = Path(args.data) / f"{evals[0]}.jsonl", work / name / "best"

    def call(cmd: list, **kw) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(cmd, timeout=args.engine_timeout, **kw)
        except subprocess.TimeoutExpired:
            return None

    for engine in args.engines.split(","):
        comp = work / f"{name}.{records.stem}.{engine}-{args.engine_dtype}.jsonl"
        scored, summary = comp.with_suffix(".scored.jsonl"), comp.with_suffix(".summary.json")
        t0 = time.time()
        done = call(["ft-infer", "-q", "--engine", engine, "--dtype", args.engine_dtype, "-m", str(checkpoint),
                     str(records), "-o", str(comp), "--max-new-tokens", str(max_new)])
        got = results[engine] = {"rc": "timeout" if done is None else done.returncode, "infer_s": round(time.time() - t0, 1)}
        if got["rc"] != 0:
            continue
        done = call(["ft-score", *score_args, str(comp), "-q", "-o", str(scored), "--summary", str(summary)])
        if done is None or done.returncode != 0:
            got["score_rc"] = "timeout" if done is None else done.returncode
            continue
        got["accuracy"] = json.loads(summary.read_text())["accuracy"]
        if first is None:
            first = scored
            continue
        done = call(["ft-score", "compare", str(first), str(scored), "--json", "-q"], capture_output=True, text=True)
        if done is not None and done.returncode == 0:
            cmp = json.loads(done.stdout)
            got.update({"same_verdicts": round(cmp["ties"] / max(cmp["shared"], 1), 4), "vs": first.name})
    return results


def table(results: list[dict]) -> str:
    """The Markdown table of the ft-train README and docs/benchmarks.md, one row per run."""
    def f(value, fmt):
        return format(value, fmt) if isinstance(value, int | float) else "-"

    rows = ["| run | flags | steps | best epoch | training s | wall s | to first step s | valid accuracy (n) "
            "| tokens/s | peak GiB | selection s/epoch | GPU |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for e in results:
        gen = [p["val_gen_s"] for p in e.get("per_epoch", []) if p.get("val_gen_s") is not None]
        acc = "-" if e.get("valid_accuracy") is None else f"{100 * e['valid_accuracy']:.1f}% ({e['n_valid']})"
        rows.append(f"| {e['name']} | {' '.join(e['flags']) or '(none)'} | {f(e.get('optimizer_steps'), 'd')} "
                    f"| {f(e.get('best_epoch'), 'd')} | {f(e.get('train_s'), '.1f')} | {f(e.get('wall_s'), '.1f')} "
                    f"| {f((e.get('timing') or {}).get('start_to_first_step_s'), '.1f')} | {acc} "
                    f"| {f(e.get('tokens_per_s_median'), ',')} | {f(e.get('peak_mem_gb'), '.1f')} "
                    f"| {f(sum(gen) / len(gen) if gen else None, '.1f')} | {e.get('gpu', '-')} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=".carry/data")
    ap.add_argument("--model")
    ap.add_argument("--runs", default="viggo-plain")
    ap.add_argument("--out", default="runs/time_to_accuracy.json")
    ap.add_argument("--work", default="runs/tta")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--record", default="", help="runs whose ft-train runs on a pty under `script`: WORK/RUN.terminal.txt")
    ap.add_argument("--engines", default="", help="also serve each run's best checkpoint with these ft-infer engines "
                    "(e.g. hf,vllm) in --engine-dtype and compare their verdicts with the first's")
    ap.add_argument("--engine-dtype", default="float32")
    ap.add_argument("--engine-timeout", type=float, default=300, help="seconds for each engine's ft-infer (and scoring)")
    ap.add_argument("extra", nargs="*", help="ft-train flags added to every run (after --)")
    ap.add_argument("--table", action="store_true", help="print --out's runs as a Markdown table, run nothing")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(Path(args.out).read_text())))
        return
    if args.list:
        for name, (task, flags) in RUNS.items():
            after = f" (after {FIRST_STAGE[name]})" if name in FIRST_STAGE else ""
            print(f"{name:20} {task:6} {' '.join(flags) or '(plain command)'}{after}")
        return
    args.record = set(filter(None, args.record.split(",")))
    Path(args.work).mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else []
    gpu = gpu_name()
    def write() -> None:  # after every step: a call cut short keeps what it measured
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        os.replace(tmp, out)

    for name in args.runs.split(","):
        entry = run(name, args, gpu)
        results.append(entry)
        write()
        if args.engines and entry["rc"] == 0:
            entry["engines"] = compare_engines(name, args)
            write()
        print(json.dumps({k: entry.get(k) for k in ("name", "rc", "wall_s", "train_s", "optimizer_steps",
                                                     "valid_accuracy", "best_epoch")}), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
