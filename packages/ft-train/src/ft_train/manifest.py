"""The manifest, ft-train.json: everything needed to know what a checkpoint is.

    {"ft_train_manifest": 1,
     "config": {...the resolved TrainConfig...},
     "parent": {"spec": "-m as given", "source": "folder|gguf|hub|ft-checkpoint",
                "path": "...", "sha256": "...of the GGUF file, or of the folder's weights"},
     "lineage": [...the parent's own lineage..., {"parent": ..., "data": ...}],
     "data": {"train": {"file": "...", "sha256": "...", "records": N, "truncated": K}, "valid": {...}},
     "seed": 0, "versions": {"torch": ..., ...},
     "resolved": {"zero": 3, "offload": "optimizer", "dtype": "float32", "workers": 2, "device": "cpu"},
     "epochs": [{"epoch": 1, "step": 40, "train_loss": ..., "val_loss": ..., "val_ppl": ...}, ...],
     "best": {"epoch": 2, "val_ppl": ..., "path": "checkpoints/epoch-2"},
     "timing": {"start_to_first_step_s": ..., "train_s": ..., "eval_s": ..., "last_step_to_exit_s": ...,
                "phases": {"imported": ..., "data_read": ..., "model_resolved": ..., "tokenized": ...,
                           "prepare": ..., "ray_init": ..., ..., "exit": ...}}}

"timing" is in OUT_DIR/ft-train.json only: the driver adds it once the workers are done (the
copies inside the checkpoints are written before the run ends). A run whose tokens came from the
token cache (ft_train/token_cache.py) also has a "token_cache_hit" phase.

When -m is itself an ft checkpoint (two-stage training, MathQA then GSM8K),
its manifest's lineage plus its own run become this run's lineage.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

PACKAGES = ("ft-train", "ft-common", "torch", "transformers", "deepspeed", "ray", "safetensors", "tokenizers")


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def parent_lineage(model_path: str) -> list[dict]:
    """The lineage to record when the model is itself an ft-train checkpoint ([] otherwise)."""
    path = Path(model_path) / "ft-train.json"
    if not path.is_file():
        return []
    parent = json.loads(path.read_text())
    step = {"parent": parent.get("parent"), "data": parent.get("data"), "best": parent.get("best"),
            "seed": parent.get("seed")}
    return list(parent.get("lineage") or []) + [step]


def build(config: dict, parent: dict, data: dict, resolved: dict, epochs: list[dict], best: dict | None,
          lineage: list[dict]) -> dict:
    return {
        "ft_train_manifest": 1,
        "config": config,
        "parent": parent,
        "lineage": lineage,
        "data": data,
        "seed": config.get("seed"),
        "versions": versions(),
        "resolved": resolved,
        "epochs": epochs,
        "best": best,
    }


WORKER_MARKS = "timing-worker.json"  # in OUT_DIR/.work: rank 0's marks, for the driver to merge


def timing(marks: dict, worker: dict) -> dict:
    """The manifest's "timing" from the driver's marks ({name: time.time()}, "start" the command's)
    and rank 0's ({"marks": {...}, "train_s", "eval_s", "graphs"?}): seconds from the start to the first
    training step, in training and validation (this run's epochs), and from the end of the last
    epoch's validation to exit; "phases" holds every mark as seconds since the start, in order."""
    start = marks["start"]
    merged = {**worker.get("marks", {}), **marks}
    phases = {k: round(v - start, 3) for k, v in sorted(merged.items(), key=lambda kv: kv[1]) if k != "start"}
    first = phases.get("first_step", phases["exit"])
    last = phases.get("last_epoch_end", phases["exit"])
    out = {"start_to_first_step_s": first, "train_s": round(worker.get("train_s", 0.0), 3),
           "eval_s": round(worker.get("eval_s", 0.0), 3), "last_step_to_exit_s": round(phases["exit"] - last, 3),
           "phases": phases}
    if "graphs" in worker:  # --cuda-graphs: shapes captured, seconds capturing, why they went off
        out["cuda_graphs"] = worker["graphs"]
    if "compiled_blocks" in worker:  # --compile: transformer blocks compiled (0: none found, eager)
        out["compiled_blocks"] = worker["compiled_blocks"]
    if worker.get("compile_s"):  # --compile: where the compiling's seconds went (compile.compile_seconds)
        out["compile_s"] = worker["compile_s"]
    for key in ("compile_failed", "compile_failed_in"):  # why, and what, went back to eager during the run
        if key in worker:
            out[key] = worker[key]
    return out
