"""bench/gpu_profile.py's training variants at the 1.5B plain batch, run on the CPU with the tiny
model: the script keeps working as ft-train's config and engine change (its TrainConfig once
lacked the warmup the recipe now chooses, and it failed before its first step)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from train_support import viggo_records, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_profile_runs_the_plain_batch_variants_on_the_cpu(tiny_model, tmp_path, shared_data):
    records = tmp_path / "records"
    records.mkdir()
    write_jsonl(records / "viggo-train.jsonl", viggo_records("train", 40))
    write_jsonl(records / "viggo-valid.jsonl", viggo_records("valid", 10))
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_profile.py"), "--device", "cpu",
                          "--model-dir", str(tiny_model), "--records", str(records), "--parts", "train",
                          "--only", "group 4k, flat master, no cudnn", "--steps", "2", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    variants = {v["name"]: v for v in json.loads((out / "gpu_profile.json").read_text())["train"]}
    assert set(variants) == {"group 4k, flat master, no cudnn", "group 4k, flat master, no cudnn, compile"}
    assert all(v["steps"] > 0 and v["real_tokens_per_s"] > 0 for v in variants.values())
    assert (out / "profile_train_group4k_compile.txt").read_text().startswith("training step x5")
