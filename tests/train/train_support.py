"""Helpers for ft-train's tests (imported by name, like tests/infer/infer_support.py: a bare
`from conftest import` would get whichever package's conftest pytest imported first)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ft_common.records import new_record
from ft_common.tasks import get_task
from tiny_model import SHARED_DATA


def viggo_records(split: str, limit: int) -> list[dict]:
    task = get_task("viggo")
    out = []
    with open(SHARED_DATA / "viggo" / f"{split}.csv", newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i >= limit:
                break
            out.append(new_record(
                id=f"viggo/{split}/{i}", task="viggo", split=split, format="tokens",
                prompt=task.prompt(row["ref"]), target=task.target(row["mr"]),
                stop=list(task.stop), special_tokens=list(task.special_tokens),
                meta={"reference": row["mr"]},
            ))
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


BIN = Path(__import__("sys").executable).parent
# The CI recipe: 2 Ray workers, DeepSpeed ZeRO-3 with the optimizer offloaded to the CPU, the
# task's special tokens, 2 epochs on 400 ViGGO records. A tiny random model needs a high lr
# and many small steps (batch 1, one record a step per worker: 200 steps an epoch) to learn to
# end its answers with <END_A>; on 2 CPU cores the run takes about a minute, most of it Ray's start.
E2E_ARGS = ["--workers", "2", "--zero", "3", "--offload", "optimizer", "--epochs", "2", "--lr", "3e-3",
            "--batch-size", "1", "--ctx-len", "128", "--log-every", "5", "--seed", "0"]


def ft_train(args: list, cwd: Path, timeout: int = 300, **kw):
    import subprocess

    return subprocess.run([str(BIN / "ft-train"), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, **kw)


# ---------------------------------------------------------------- ranks in spawned processes (gloo)


def spawn_ranks(fn, args: tuple, nprocs: int = 2, limit_s: float = 240) -> None:
    """mp.spawn(fn, args) that fails the test when a rank has not exited within limit_s,
    instead of stalling the suite (a rank blocked in gloo's teardown did so once)."""
    import time

    import pytest
    import torch.multiprocessing as mp

    ranks = mp.spawn(fn, args=args, nprocs=nprocs, join=False)
    deadline = time.monotonic() + limit_s
    while not ranks.join(timeout=5):
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            pytest.fail(f"a spawned rank did not exit within {limit_s:.0f} s")


def end_rank() -> None:
    """A spawned rank's last call, once its results are written: every rank past its last
    collective, the group destroyed, then the process ends without interpreter finalization.
    Rank 0 of test_valid_accuracy's gloo test aborted once in CI after both ranks had written
    their results (SIGABRT, "terminate called without an active exception"; not reproduced in
    17 runs here, 7 of them with both CPUs busy). The likely cause, as pytorch/pytorch#179291 describes it: gloo's worker
    threads still hold a finished collective's tensors, and freeing them during finalization
    takes the GIL from a dying interpreter."""
    import gc
    import os
    import sys

    import torch.distributed as dist

    dist.barrier()
    dist.destroy_process_group()
    gc.collect()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
