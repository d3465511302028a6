"""ft-train command line: flags -> TrainConfig -> trainer.run -> one JSON line on stdout."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import click
from ft_common.cli import CONTEXT_SETTINGS, common_options, model_option, run, seed_option
from ft_common.errors import UsageError

from ft_train.config import LAYOUTS, OFFLOAD_CHOICES, ZERO_CHOICES, TrainConfig

EPILOG = """\b
Examples:
  ft-prep viggo --split train | ft-train -m model.gguf --train - --valid valid.jsonl -o runs/viggo
  ft-train -m runs/mathqa/best --train gsm8k.jsonl --valid gsm8k-valid.jsonl -o runs/gsm8k
  ft-train -m HuggingFaceTB/SmolLM2-135M --train t.jsonl --valid v.jsonl -o runs/x --workers 2 --zero 3 --offload optimizer
  ft-train ... -o runs/viggo --resume        # continue a killed run

\b
Writes OUT_DIR/checkpoints/epoch-N (Hugging Face folders), OUT_DIR/best (link to the lowest
validation perplexity), ft-train.json (manifest), metrics.jsonl, curve.png, state/ (for --resume).
stdout: one JSON object at the end: {"best": PATH, "best_val_ppl": X, "epochs": N}.
"""


@click.command(context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@model_option(required=True, help="Model: a local folder, an ft checkpoint, a .gguf file or a hub id.")
@click.option("--train", "train", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="Training records (JSONL with prompt and target); '-' reads stdin.")
@click.option("--valid", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Validation records. Without it, --valid-fraction of the training records is held out.")
@click.option("--valid-fraction", type=click.FloatRange(0.0, 0.5, min_open=True), default=0.05, show_default=True,
              help="Share of training records held out when there is no --valid.")
@click.option("-o", "--output", "out_dir", required=True, envvar="FT_OUTPUT", type=click.Path(file_okay=False),
              help="Output folder (OUT_DIR). [env FT_OUTPUT]")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ray Train workers (one per GPU).")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True)
@click.option("--address", default=None, envvar="RAY_ADDRESS", help="Join this Ray cluster (multi-node). [env RAY_ADDRESS]")
@click.option("--zero", type=click.Choice(ZERO_CHOICES), default="auto", show_default=True,
              help="DeepSpeed ZeRO stage; auto = fastest that fits in memory (0 = plain PyTorch/DDP).")
@click.option("--offload", type=click.Choice(OFFLOAD_CHOICES), default="auto", show_default=True,
              help="Offload to CPU: optimizer state, or all (optimizer and parameters, ZeRO-3).")
@click.option("--ds-config", type=click.Path(exists=True, dir_okay=False), default=None,
              help="DeepSpeed JSON whose keys override ft-train's (implies DeepSpeed even at ZeRO-0).")
@click.option("--dtype", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
              help="auto: bf16 on GPU, fp32 on CPU.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Peak learning rate (linear warmup, cosine decay to lr/10).")
@click.option("--warmup", type=click.FloatRange(0, 1), default=0.03, show_default=True, help="Warmup share of all steps.")
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--batch-tokens", type=click.IntRange(min=1), default=None,
              help="Padded tokens per worker per micro-step. [default: 24576 on GPU, less for large "
                   "models (activations within 60% of its memory); 4096 on CPU]")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Instead of --batch-tokens: a fixed number of sequences per micro-step (records, or packed rows).")
@click.option("--grad-accum", type=click.IntRange(min=1), default=1, show_default=True,
              help="Micro-steps per optimizer step.")
@click.option("--ctx-len", type=click.IntRange(min=8), default=512, show_default=True,
              help="Longest sequence; longer records are truncated and counted.")
@click.option("--loss-on", type=click.Choice(["target", "all"]), default="target", show_default=True,
              help="Loss on target tokens only, or on prompt and target (the case study).")
@click.option("--layout", type=click.Choice(LAYOUTS), default="group", show_default=True,
              help="group records by length (no mask needed); pack them into ctx-len rows; or pad each to ctx-len.")
@click.option("--pad-to-max", is_flag=True, help="Same as --layout pad: the case study's pad-to-512.")
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations (less memory, slower).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model (GPU, ZeRO-0).")
@click.option("--keep", type=click.IntRange(min=1), default=2, show_default=True,
              help="Epoch checkpoints to keep (the best is always kept).")
@click.option("--stop-perplexity", type=float, default=None, help="Stop once validation perplexity <= this.")
@click.option("--patience", type=click.IntRange(min=1), default=None,
              help="Stop after N epochs without a better validation perplexity.")
@click.option("--save-all", is_flag=True, help="Write every epoch's checkpoint (default: a better one, and the last).")
@click.option("--save-minutes", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Save the full training state (for --resume) once this many minutes have passed since the last.")
@click.option("--save-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also save the full training state every N steps, and at each epoch end (0: off).")
@click.option("--resume", is_flag=True, help="Continue from OUT_DIR/state (same --workers and --zero).")
@click.option("--special-tokens", "special_tokens_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Tokens to add, one per line (default: the records' special_tokens).")
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True,
              help="A metrics.jsonl line every N steps.")
@seed_option()
@common_options
def cli(model, train, valid, valid_fraction, out_dir, workers, device, address, zero, offload, ds_config, dtype,
        epochs, lr, warmup, weight_decay, batch_tokens, batch_size, grad_accum, ctx_len, loss_on, layout, pad_to_max,
        gradient_checkpointing, compile_, keep, stop_perplexity, patience, save_all, save_minutes, save_every, resume,
        special_tokens_file, log_every, seed, quiet) -> None:
    """Fine-tune every parameter of a causal LM on prompt/target records.

    Ray Train workers, DeepSpeed ZeRO (or plain PyTorch when that is fastest),
    the records' special tokens added, validation perplexity each epoch, the
    best checkpoint kept.
    """
    if train == "-" and valid == "-":
        raise UsageError("only one of --train and --valid can read stdin")
    if offload in ("optimizer", "all") and zero == "0":
        raise UsageError("--offload needs DeepSpeed ZeRO: use --zero 1, 2 or 3 (all: 3)")
    if offload == "all" and zero in ("1", "2"):
        raise UsageError("--offload all needs --zero 3")
    cfg = TrainConfig(
        model=model, train=train, valid=valid, valid_fraction=valid_fraction, out_dir=out_dir, workers=workers,
        device=device, address=address, zero=zero, offload=offload, ds_config=ds_config, dtype=dtype,
        epochs=epochs, lr=lr, warmup=warmup, weight_decay=weight_decay, batch_tokens=batch_tokens or 0, batch_size=batch_size,
        grad_accum=grad_accum, ctx_len=ctx_len, loss_on=loss_on, layout="pad" if pad_to_max else layout,
        gradient_checkpointing=gradient_checkpointing, compile=compile_, seed=seed, keep=keep,
        stop_perplexity=stop_perplexity, patience=patience, save_all=save_all, save_minutes=save_minutes,
        save_every=save_every, resume=resume,
        log_every=log_every, quiet=quiet,
    )
    from ft_train.trainer import run as train_run

    with stdout_to_stderr():
        result = train_run(cfg, special_tokens_file)
    click.echo(json.dumps(result))


@contextlib.contextmanager
def stdout_to_stderr():
    """While training, anything written to fd 1 (Ray's forwarded worker logs, DeepSpeed)
    goes to stderr, so stdout carries only the final JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main() -> None:
    run(cli, "ft-train")
