"""Fixtures for ft-train tests: ViGGO records built from the CSV (as ft-prep makes them)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
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


@pytest.fixture(scope="session")
def viggo_files(tmp_path_factory, shared_data) -> dict:
    """train.jsonl (300 records) and valid.jsonl (60) of ViGGO in the special-token layout."""
    d = tmp_path_factory.mktemp("viggo")
    return {"train": write_jsonl(d / "train.jsonl", viggo_records("train", 300)),
            "valid": write_jsonl(d / "valid.jsonl", viggo_records("valid", 60))}


BIN = Path(__import__("sys").executable).parent
# The CI recipe: 2 Ray workers, DeepSpeed ZeRO-3 with the optimizer offloaded to the CPU, the
# task's special tokens, 2 epochs on 400 ViGGO records. A tiny random model needs a high lr
# and many small steps (batch 1 of packed 128-token rows: ~160 steps an epoch) to learn to end
# its answers with <END_A>; on 2 CPU cores the run takes about a minute, most of it Ray's start.
E2E_ARGS = ["--workers", "2", "--zero", "3", "--offload", "optimizer", "--epochs", "2", "--lr", "3e-3",
            "--batch-size", "1", "--ctx-len", "128", "--log-every", "5", "--seed", "0"]


def ft_train(args: list, cwd: Path, timeout: int = 300, **kw):
    import subprocess

    return subprocess.run([str(BIN / "ft-train"), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, **kw)


@pytest.fixture(scope="session")
def e2e_files(tmp_path_factory, shared_data) -> dict:
    d = tmp_path_factory.mktemp("viggo-e2e")
    return {"train": write_jsonl(d / "train.jsonl", viggo_records("train", 400)),
            "valid": write_jsonl(d / "valid.jsonl", viggo_records("valid", 60))}


@pytest.fixture(scope="session")
def e2e_run(tmp_path_factory, tiny_model, e2e_files) -> dict:
    """One real ft-train run (Ray + DeepSpeed ZeRO-3 + offload, 2 workers), shared by the tests."""
    import time

    cwd = tmp_path_factory.mktemp("e2e")
    start = time.monotonic()
    out = ft_train(["-m", tiny_model, "--train", e2e_files["train"], "--valid", e2e_files["valid"],
                    "-o", cwd / "run", *E2E_ARGS], cwd)
    return {"proc": out, "out": cwd / "run", "seconds": time.monotonic() - start}
