"""ft-train command line: flags -> TrainConfig -> driver.train -> one JSON line on stdout."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import click
from ft_common.cli import CONTEXT_SETTINGS, run
from ft_common.lean_imports import hide_unused

from ft_train.config import TrainConfig, cli_options

EPILOG = """\b
Examples:
  ft-prep TASK --split train | ft-train -m model.gguf --train - --valid valid.jsonl -o runs/task
  ft-train -m runs/stage1/best --train stage2.jsonl --valid stage2-valid.jsonl -o runs/stage2
  ft-train -m HuggingFaceTB/SmolLM2-135M --train t.jsonl --valid v.jsonl -o runs/x --workers 2 --zero 3 --offload optimizer
  ft-train ... -o runs/task --resume        # continue a killed run

\b
Writes OUT_DIR/checkpoints/epoch-N (Hugging Face folders), OUT_DIR/best (link to the best epoch:
the task checker's accuracy, or validation perplexity; see --select-by), ft-train.json (manifest),
metrics.jsonl, curve.png, ft-train.log (Ray's and the workers' output), state/ (for --resume).
stdout: one JSON object at the end: {"best": PATH, "best_val_ppl": X, "epochs": N} (and
"best_val_accuracy" when chosen by accuracy).
"""


@click.command(context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@cli_options  # every flag, its help and default: the fields of ft_train.config.TrainConfig
def cli(**params) -> None:
    """Fine-tune every parameter of a causal LM on prompt/target records.

    Ray Train workers, DeepSpeed ZeRO (or plain PyTorch when that is fastest),
    the records' special tokens added, the learning rate, epochs and batch chosen
    from the model and the data unless given, validation perplexity (and on a GPU
    the task checker's accuracy) each epoch, the best checkpoint kept.
    """
    cfg = TrainConfig.from_cli(params)
    hide_unused()  # before the driver imports transformers (ft_common.lean_imports)
    from ft_train.driver import train

    with stdout_to_stderr():
        result = train(cfg)
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
    try:
        run(cli, "ft-train")
    except SystemExit as done:
        if done.code in (0, None) and "torch" in sys.modules:
            exit_without_teardown()
        raise


def exit_without_teardown() -> None:
    """Exit 0 now, skipping Python's teardown. Called once the command has succeeded: the
    checkpoints, the manifest and the curve are written and closed (the writer and the plotter
    joined), Ray is shut down, and stdout's JSON is flushed here. What the teardown would still do is
    release what the process exit releases anyway (inductor's compile workers, CUDA's context,
    the modules' finalizers): 2-3 s of a 40 s ViGGO run's wall on the GPU host (docs/benchmarks.md)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
