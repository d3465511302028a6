"""The run's configuration: one frozen dataclass, every field documented, saved beside
every checkpoint (ft-train-config.json) and inside the manifest.

Each field that is a flag carries its click option in `metadata` (flags, type, help;
the default is the field's), so `cli_options` builds ft-train's flags from this one
place, in field order. The driver derives resolved values with dataclasses.replace;
the Ray workers rebuild it from a plain dict.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import click
from ft_common.cli import common_options, model_option, seed_option
from ft_common.errors import UsageError

from ft_train.recipe import LR_RULES, MIN_BATCH_TOKENS, TARGET_STEPS

LAYOUTS = ("auto", "flat", "group", "pack", "pad")
ZERO_CHOICES = ("auto", "0", "1", "2", "3")
SELECT_CHOICES = ("auto", "accuracy", "ppl")
OFFLOAD_CHOICES = ("auto", "none", "optimizer", "all")
LAUNCH_CHOICES = ("auto", "ray", "local")
GRAPH_CHOICES = ("auto", "on", "off")
COMPILE_CHOICES = ("auto", "on", "off")
_FILE = click.Path(dir_okay=False, allow_dash=True)
# The default --batch-tokens (data.default_batch_tokens): on a GPU enough work per step to keep
# it busy (a small model is launch-bound below that), halved for large models (plan.memory_fits); on a CPU less.
GPU_BATCH_TOKENS = 24576
CPU_BATCH_TOKENS = 4096


def opt(default: Any = MISSING, help: str | None = None, *, flags: tuple[str, ...] = (), **click_kw: Any) -> Any:
    """A field that is also a flag: `click_kw` goes to click.option (type, required, envvar,
    cli_default); `flags` overrides the --field-name spelling."""
    meta = {"cli": {"flags": flags, "help": help, **click_kw}}
    return field(default=default, metadata=meta)


def shared(default: Any, decorator: Callable) -> Any:
    """A field whose flag is one every ft command spells the same way (ft_common.cli)."""
    return field(default=default, metadata={"decorator": decorator})


@dataclass(frozen=True)
class TrainConfig:
    # --- what to train, on what, where to write ---
    # -m as the user wrote it: a folder, a .gguf file, a hub id, an ft checkpoint
    model: str = shared("", model_option(required=True, help="Model: a local folder, an ft checkpoint, a .gguf file or a hub id."))
    model_path: str = ""  # what from_pretrained loads (the resolver's answer)
    train: str = opt("", "Training records (JSONL with prompt and target); '-' reads stdin.", type=_FILE, required=True)
    valid: str | None = opt(None, "Validation records. Without it, --valid-fraction of the training records is held out.",
                            type=_FILE)
    valid_fraction: float = opt(0.05, "Share of training records held out when there is no --valid.",
                                type=click.FloatRange(0.0, 0.5, min_open=True))
    # OUT_DIR: checkpoints/, best, metrics.jsonl, ft-train.json, curve.png, state/
    out_dir: str = opt("", "Output folder (OUT_DIR).", flags=("-o", "--output"), type=click.Path(file_okay=False),
                       required=True)

    # --- distribution ---
    workers: int = opt(1, "Ray Train workers (one per GPU).", type=click.IntRange(min=1))
    device: str = opt("auto", type=click.Choice(["auto", "cuda", "cpu"]))  # auto: cuda when there is one
    # None starts a local Ray
    address: str | None = opt(None, "Join this Ray cluster (multi-node). [env RAY_ADDRESS]", envvar="RAY_ADDRESS")
    # auto: one worker and no --address trains in this process (cluster.in_process)
    launch: str = opt("auto", "Where the workers run: ray (Ray Train worker processes on a Ray cluster), local (in "
                              "this process, Ray Train's local mode: one worker, no cluster to start), or auto "
                              "(local for one worker without --address, else ray).",
                      type=click.Choice(LAUNCH_CHOICES))
    zero: str = opt("auto", "DeepSpeed ZeRO stage; auto = fastest that fits in memory (0 = plain PyTorch/DDP).",
                    type=click.Choice(ZERO_CHOICES))  # auto: see engine.choose_zero
    offload: str = opt("auto", "Offload to CPU: optimizer state, or all (optimizer and parameters, ZeRO-3).",
                       type=click.Choice(OFFLOAD_CHOICES))
    ds_config: str | None = opt(None, "DeepSpeed JSON whose keys override ft-train's (implies DeepSpeed even at ZeRO-0).",
                                type=click.Path(exists=True, dir_okay=False))
    dtype: str = opt("auto", "auto: bf16 on GPU, fp32 on CPU.", type=click.Choice(["auto", "bf16", "fp32"]))

    # --- optimisation ---
    # None: chosen by the default recipe (ft_train.recipe) from the model's size and the data
    epochs: int | None = opt(None, "Passes over the training rows. [default: from the data's size in tokens and "
                                   "the model's; 10 at most, as the case study]", type=click.IntRange(min=1))
    lr: float | None = opt(None, "Peak learning rate (linear warmup, cosine decay to lr/10). [default: by "
                                 "--lr-rule]", type=click.FloatRange(min=0, min_open=True))  # AdamW
    lr_rule: str = opt("auto", "How the default lr is chosen: loss: from the model's size and its loss on the "
                               "training targets before any update, measured first on 8 batches (2e-4 x "
                               "(135M/params)^0.5 x (loss/4.19)^2 from 0.6B up; the loss counts less below, not at 135M); "
                               "auto: the same, measured only where the loss moves the lr (above 135M); size: from "
                               "the model's size alone (2e-4 at 135M, "
                               "1e-5 from 0.6B up).", type=click.Choice(LR_RULES))
    warmup: float | None = opt(None, "Warmup share of all steps. [default: 3%, at least 10 steps]",
                               type=click.FloatRange(0, 1))
    weight_decay: float = opt(0.0, type=float)  # AdamW weight decay
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    grad_clip: float = 1.0  # gradient-norm clip (0 = off)
    # 0 = auto (ft_train.recipe within data.default_batch_tokens' cap); the flag's unset value is None
    batch_tokens: int = opt(0, f"Padded tokens per worker per micro-step; on a GPU, a given batch too large for it "
                               f"is split into micro-batches (more --grad-accum, the same tokens a step). [default: "
                               f"the run's tokens over {TARGET_STEPS} steps, at least {MIN_BATCH_TOKENS}, at most "
                               f"{GPU_BATCH_TOKENS} on GPU (less for large models: the training state and a batch's "
                               f"activations within 85% of its memory) or {CPU_BATCH_TOKENS} on CPU]",
                            type=click.IntRange(min=1), cli_default=None)
    batch_size: int | None = opt(None, "Instead of --batch-tokens: a fixed number of sequences per micro-step "
                                       "(records, or packed rows).", type=click.IntRange(min=1))
    grad_accum: int = opt(1, "Micro-steps per optimizer step.", type=click.IntRange(min=1))
    ctx_len: int = opt(512, "Longest sequence; longer records are truncated and counted.", type=click.IntRange(min=8))
    loss_on: str = opt("target", "Loss on target tokens only, or on prompt and target (the case study).",
                       type=click.Choice(["target", "all"]))
    # flat: end to end, no padding, varlen attention (ft_train.flat); group: length-grouped, right-padded,
    # no attention mask; pack: into ctx_len rows; pad: each to ctx_len; auto: driver.layout_choice
    layout: str = opt("auto", "flat: records end to end in one row, no padding, attention kept inside each record; "
                              "group records by length (padded, no mask needed); pack them into ctx-len rows; or pad "
                              "each to ctx-len. auto: flat on a GPU, group on a CPU.", type=click.Choice(LAYOUTS))
    # fewer distinct batch shapes, each of which costs its first-time work on a GPU (ViGGO: 59 in the
    # first epoch at 1, 18 at 8, for 7.8% padding instead of 2.9%: bench/batch_shapes.py); 1 unless
    # given, or step_graphs.WIDTH_MULTIPLE where CUDA graphs are on (driver.graphs_choice)
    pad_multiple: int = opt(1, "group layout: round each batch's width up to a multiple of N and cut batches by it.",
                            type=click.IntRange(min=1))
    gradient_checkpointing: bool = opt(False, "Recompute activations (less memory, slower).")
    # ft_train/compile.py; auto: on for a run long enough to repay the compile (driver.compile_choice)
    compile: str = opt("auto", "torch.compile each transformer block for the training steps (ZeRO-0): one block's "
                               "compile, reused by every block and batch shape, inside the CUDA graphs. auto: on "
                               "where CUDA graphs are on and the run trains on >= 3M tokens (at 135M; fewer for larger "
                               "models). The loss's softmax and the optimizer step compile with them. --compile alone "
                               "means on.", type=click.Choice(COMPILE_CHOICES), is_flag=False, flag_value="on")
    # ft_train.step_graphs; auto: on where it applies (driver.graphs_choice), resolved to on or off
    cuda_graphs: str = opt("auto", "Replay each training step from a CUDA graph (one per batch width; the group "
                                   "layout's widths rounded up to 16 unless --pad-multiple is given): a small model's "
                                   "step costs one launch instead of thousands. auto: on for one CUDA worker at ZeRO-0 "
                                   "in bf16 with the group layout.",
                           type=click.Choice(GRAPH_CHOICES))
    # ft_train.fused_loss; ZeRO-3 always takes the plain path (its head weight is gathered only by the module)
    fused_loss: bool = opt(True, "The LM head and its loss a chunk of target rows at a time: never the whole "
                                 "[tokens, vocab] logits, a large vocabulary's largest activation; the same loss. "
                                 "--no-fused-loss: all at once, as before (to compare, or to rule it out).",
                           flags=("--fused-loss/--no-fused-loss",))

    # --- checkpoints, early stopping, resume ---
    keep: int = opt(2, "Epoch checkpoints to keep (the best is always kept).", type=click.IntRange(min=1))
    stop_perplexity: float | None = opt(None, "Stop once validation perplexity <= this.", type=float)
    patience: int | None = opt(None, "Stop after N epochs without a better checkpoint (by --select-by).",
                               type=click.IntRange(min=1))
    # auto: accuracy on a GPU when ft-score has a checker for the records' task (on a CPU, generating
    # every epoch would cost more than the training); the driver resolves it to accuracy or ppl
    select_by: str = opt("auto", "Keep the best checkpoint by: accuracy (greedy-generate on a validation sample in "
                                 "each of the run's last three epochs and score it with the task's checker from "
                                 "ft-score), ppl (validation "
                                 "perplexity), or auto (accuracy on a GPU where the records' task has a checker).",
                         type=click.Choice(SELECT_CHOICES))
    eval_samples: int = opt(256, "Validation records generated and scored each epoch for --select-by accuracy.",
                            type=click.IntRange(min=1))
    save_all: bool = opt(False, "Write every epoch's checkpoint (default: a better one, and the last).")
    save_minutes: float = opt(10.0, "Save the full training state (for --resume) once this many minutes have passed "
                                    "since the last.", type=click.FloatRange(min=0))
    save_every: int = opt(0, "Also save the full training state every N steps, and at each epoch end (0: off).",
                          type=click.IntRange(min=0))
    resume: bool = opt(False, "Continue from OUT_DIR/state (same --workers and --zero).")
    dry_run: bool = opt(False, "Read, check and tokenise the data, print the plan (what the recipe chose, the steps, "
                               "ZeRO, where the workers run) and stop: nothing trained, nothing left in OUT_DIR.")

    # --- tokens ---
    special_tokens_file: str | None = opt(None, "Tokens to add, one per line (default: the records' special_tokens).",
                                          flags=("--special-tokens",), type=click.Path(exists=True, dir_okay=False))
    special_tokens: list[str] = field(default_factory=list)  # added with special_tokens=True (the driver fills it)
    stop: str | None = None  # the stop token: the checkpoint's eos in its generation config

    log_every: int = opt(10, "A metrics.jsonl line every N steps (and at steps 1 and 2: the loss before any "
                             "update, the first ETA).",
                         type=click.IntRange(min=1))
    seed: int = shared(0, seed_option())  # weights of new rows (none: mean init), data order, torch RNG
    quiet: bool = shared(False, common_options)  # no progress line (-q; common_options also adds -v)

    def __post_init__(self) -> None:
        # Flag combinations no run can honour: refuse them before any work.
        if self.train == "-" and self.valid == "-":
            raise UsageError("only one of --train and --valid can read stdin")
        if self.offload in ("optimizer", "all") and self.zero == "0":
            raise UsageError("--offload needs DeepSpeed ZeRO: use --zero 1, 2 or 3 (all: 3)")
        if self.offload == "all" and self.zero in ("1", "2"):
            raise UsageError("--offload all needs --zero 3")
        if self.launch == "local" and (self.workers > 1 or self.address):
            raise UsageError("--launch local runs one worker in this process: not with --workers > 1 or --address")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        if "betas" in known:
            known["betas"] = tuple(known["betas"])
        return cls(**known)

    @classmethod
    def from_cli(cls, params: dict) -> TrainConfig:
        """The config from click's parsed params (what `cli_options` declared)."""
        params = dict(params)
        if params.pop("pad_to_max", False):
            params["layout"] = "pad"
        for f in fields(cls):  # a flag left unset (None) takes the field's default
            if f.name in params and params[f.name] is None and f.default is not MISSING:
                params[f.name] = f.default
        return cls(**params)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


# Flags that are not fields: an alias that sets a field (from_cli reads it), placed after that field.
_ALIASES = {"layout": click.option("--pad-to-max", is_flag=True, help="Same as --layout pad: the case study's pad-to-512.")}


def cli_options(command: Callable) -> Callable:
    """Decorate `command` with one click option per TrainConfig flag field, in field order."""
    decorators = []
    for f in fields(TrainConfig):
        if "decorator" in f.metadata:
            decorators.append(f.metadata["decorator"])
        elif "cli" in f.metadata:
            kw = dict(f.metadata["cli"])
            flags = kw.pop("flags") or ("--" + f.name.replace("_", "-"),)
            default = None if kw.get("required") else kw.pop("cli_default", f.default)
            if isinstance(f.default, bool):
                kw["is_flag"] = True
            elif default is not None:
                kw["show_default"] = True
            if not kw.get("required"):  # click >= 8.3 counts an explicit default=None as given
                kw["default"] = default
            decorators.append(click.option(*flags, f.name, **kw))
        if f.name in _ALIASES:
            decorators.append(_ALIASES[f.name])
    for decorator in reversed(decorators):  # click lists options in reverse order of application
        command = decorator(command)
    return command
