"""The learning curve: training loss per step, validation perplexity (and the task checker's
accuracy, where it was measured) per epoch (curve.png)."""

from __future__ import annotations

import math
from pathlib import Path

from ft_common.atomic import atomic_write
from ft_common.jsonl import read_records


def read_metrics(path: Path) -> tuple[list[dict], list[dict]]:
    steps, epochs = [], []
    if path.is_file():
        for m in read_records(str(path)):
            if "val_ppl" in m:
                epochs.append(m)
            elif "loss" in m:  # not step 0's line (the lr chosen from the loss before training)
                steps.append(m)
    return steps, epochs


def plot_curve(metrics_path: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    steps, epochs = read_metrics(metrics_path)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    if steps:
        ax1.plot([m["step"] for m in steps], [m["loss"] for m in steps], label="train loss (per step)")
    if epochs:
        ax1.plot([m["step"] for m in epochs], [m["train_loss"] for m in epochs], "o-", label="train loss (epoch mean)")
        ax2.plot([m["epoch"] for m in epochs], [m["val_ppl"] for m in epochs], "o-", color="C1")
        measured = [m for m in epochs if m.get("val_accuracy") is not None]
        if measured:
            acc = ax2.twinx()
            acc.plot([m["epoch"] for m in measured], [100 * m["val_accuracy"] for m in measured], "s--", color="C2")
            acc.set_ylabel("validation accuracy, % (task checker)", color="C2")
    ax1.set_xlabel("optimizer step")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation perplexity")
    if epochs and all(0 < m["val_ppl"] < math.inf for m in epochs):  # a NaN or inf perplexity can't be log-scaled
        ax2.set_yscale("log")
    fig.suptitle("ft-train learning curve")
    fig.tight_layout()
    with atomic_write(out_png, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
