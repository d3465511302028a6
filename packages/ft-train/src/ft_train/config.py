"""The run's configuration: one dataclass, every field documented, saved beside
every checkpoint (ft-train-config.json) and inside the manifest.

The CLI fills it from flags; the Ray workers rebuild it from a plain dict.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

LAYOUTS = ("pack", "group", "pad")
ZERO_CHOICES = ("auto", "0", "1", "2", "3")
OFFLOAD_CHOICES = ("auto", "none", "optimizer", "all")


@dataclass
class TrainConfig:
    # --- what to train, on what, where to write ---
    model: str = ""  # -m as the user wrote it: a folder, a .gguf file, a hub id, an ft checkpoint
    model_path: str = ""  # what from_pretrained loads (the resolver's answer)
    train: str = ""  # training JSONL ('-' = stdin)
    valid: str | None = None  # validation JSONL; None holds out valid_fraction of the training rows
    valid_fraction: float = 0.05  # held-out share of the training rows when there is no --valid
    out_dir: str = ""  # OUT_DIR: checkpoints/, best, metrics.jsonl, ft-train.json, curve.png, state/

    # --- distribution ---
    workers: int = 1  # Ray Train workers (one per GPU on GPU machines)
    device: str = "auto"  # auto (cuda when there is one), cuda, cpu
    address: str | None = None  # join this Ray cluster (multi-node); None starts a local one
    zero: str = "auto"  # DeepSpeed ZeRO stage 0-3, or auto (see engine.choose_zero)
    offload: str = "auto"  # none, optimizer (to CPU), all (optimizer and parameters, ZeRO-3 only)
    ds_config: str | None = None  # a DeepSpeed JSON whose keys override ft-train's
    dtype: str = "auto"  # auto: bf16 on GPU, fp32 on CPU; or bf16 / fp32

    # --- optimisation ---
    epochs: int = 10  # passes over the training rows (the case study: 10)
    lr: float = 1e-4  # peak learning rate (AdamW), after linear warmup, cosine decay to lr/10
    warmup: float = 0.03  # warmup as a share of all optimizer steps
    weight_decay: float = 0.0  # AdamW weight decay
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    grad_clip: float = 1.0  # gradient-norm clip (0 = off)
    batch_tokens: int = 0  # padded tokens per worker per micro-step; 0 = auto (24576 on GPU or less, see data.default_batch_tokens; 4096 on CPU)
    batch_size: int | None = None  # or a fixed number of sequences per micro-step (a packed row, or one record)
    grad_accum: int = 1  # micro-steps per optimizer step
    ctx_len: int = 512  # longest sequence; longer records are truncated (and counted)
    loss_on: str = "target"  # target (loss on target tokens only) or all (prompt too, as the case study)
    layout: str = "group"  # group (length-grouped, right-padded, no attention mask), pack (records packed into ctx_len rows), pad (every record padded to ctx_len, the case study)
    gradient_checkpointing: bool = False  # recompute activations in backward (less memory, ~30% slower)
    compile: bool = False  # torch.compile the model (GPU, ZeRO-0 only)
    seed: int = 0  # seeds weights of new rows (none: mean init), data order, torch RNG

    # --- tokens ---
    special_tokens: list[str] = field(default_factory=list)  # added with special_tokens=True
    stop: str | None = None  # the stop token: the checkpoint's eos in its generation config

    # --- checkpoints, early stopping, resume ---
    keep: int = 2  # keep the K newest epoch checkpoints (the best is always kept)
    stop_perplexity: float | None = None  # stop once validation perplexity is at or below this
    patience: int | None = None  # stop after this many epochs without a better validation perplexity
    save_all: bool = False  # write every epoch's checkpoint (default: only a better one, and the last)
    save_minutes: float = 10.0  # save the full training state (for --resume) when this long has passed since the last
    save_every: int = 0  # also save the full training state every N optimizer steps (0: off)
    resume: bool = False  # continue from OUT_DIR/state (same workers and ZeRO stage)
    log_every: int = 10  # write a metrics.jsonl line every N optimizer steps
    quiet: bool = False  # no progress line

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        if "betas" in known:
            known["betas"] = tuple(known["betas"])
        return cls(**known)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
