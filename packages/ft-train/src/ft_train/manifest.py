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
     "best": {"epoch": 2, "val_ppl": ..., "path": "checkpoints/epoch-2"}}

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
