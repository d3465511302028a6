"""Fixtures for ft-train tests: ViGGO records built from the CSV (as ft-prep makes them)."""

from __future__ import annotations

import pytest
from train_support import E2E_ARGS, ft_train, viggo_records, write_jsonl


@pytest.fixture(scope="session")
def viggo_files(tmp_path_factory, shared_data) -> dict:
    """train.jsonl (300 records) and valid.jsonl (60) of ViGGO in the special-token layout."""
    d = tmp_path_factory.mktemp("viggo")
    return {"train": write_jsonl(d / "train.jsonl", viggo_records("train", 300)),
            "valid": write_jsonl(d / "valid.jsonl", viggo_records("valid", 60))}


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


@pytest.fixture(autouse=True)
def _no_compile_failure_carried_over():
    """ft_train.compile remembers a failed compile for the rest of the process (one run is one
    process); tests share a process, so each starts clean."""
    from ft_train import compile as ft_compile

    ft_compile._FAILED.clear()
    yield
    ft_compile._FAILED.clear()
