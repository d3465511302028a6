"""Distinct batch shapes of ft-train's plan, and its padding, per --pad-multiple (or --layout flat's one).

Each new (rows, width) a GPU sees costs first-time work; fewer shapes cost padding. The plan is
the one ft-train builds for a GPU (`--device cuda --dry-run`: no GPU needed, nothing trained).

    python bench/batch_shapes.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --train .carry/data/viggo-train.jsonl --valid .carry/data/viggo-valid.jsonl --multiples 1,8,16
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace


def shapes(plan) -> dict:
    from ft_train.data import batch_width
    from ft_train.step_graphs import shape_table

    cfg, first, every, real, padded, graphed = plan.cfg, set(), set(), 0, 0, 0
    # with CUDA graphs on, every batch is padded to its width's graph shape (ft_train.step_graphs)
    table = shape_table(plan.train_batches, cfg.ctx_len, cfg.pad_multiple, plan.flat) if cfg.cuda_graphs == "on" else {}
    for epoch, batches in enumerate(plan.train_batches):
        for batch in batches:
            # the flat layout: one row of the run's width (ft_train.flat.FlatShape), whatever the batch holds
            width = plan.flat.width if plan.flat else batch_width(batch, cfg.layout, cfg.ctx_len, cfg.pad_multiple)
            shape = (1 if plan.flat else len(batch), width)
            every.add(shape)
            if epoch == 0:
                first.add(shape)
            real += sum(len(r["ids"]) for seq in batch for r in seq)
            padded += shape[0] * width
            if table:
                graphed += table[width].rows * width
    out = {"layout": cfg.layout, "pad_multiple": cfg.pad_multiple, "batch_tokens": cfg.batch_tokens, "epochs": cfg.epochs,
           "first_epoch_shapes": len(first), "all_epochs_shapes": len(every),
           "padding_share": round(padded / real - 1, 4)}
    if table:
        out.update({"graph_shapes": len(table), "graph_padding_share": round(graphed / real - 1, 4)})
    if plan.flat:  # the flat layout's shape: records a batch, and the pieces its tail is cut into
        f, batches = plan.flat, [b for e in plan.train_batches for b in e] + plan.valid_batches
        records = [len(b) for b in batches]
        out.update({"flat_shape": vars(f), "records_per_batch_mean": round(sum(records) / len(records), 1),
                    "records_per_batch_max": max(records),
                    "tail_pieces_mean": round(f.pieces - sum(records) / len(records), 1)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--valid")
    ap.add_argument("--multiples", default="1,8,16,32")
    ap.add_argument("--layout", default="group", help="ft-train's --layout (auto: flat for this GPU plan)")
    ap.add_argument("--cuda-graphs", default="off", choices=("on", "off"),
                    help="on: also the graph shapes (one per width) and their padding")
    a = ap.parse_args()
    from ft_train.config import TrainConfig
    from ft_train.driver import prepare

    with tempfile.TemporaryDirectory() as out:
        base = TrainConfig(model=a.model, train=a.train, valid=a.valid, out_dir=out, device="cuda", dry_run=True,
                           quiet=True, cuda_graphs=a.cuda_graphs, layout=a.layout)
        for m in a.multiples.split(","):
            print(json.dumps(shapes(prepare(replace(base, pad_multiple=int(m))).plan)))


if __name__ == "__main__":
    main()
