"""Where the workers run: one worker trains in ft-train's own process (Ray Train's local mode)
unless --launch ray; the run is the same either way."""

from __future__ import annotations

import json

import pytest
from train_support import ft_train, viggo_records, write_jsonl

ARGS = ["--epochs", "2", "--batch-size", "4", "--ctx-len", "128", "--lr", "1e-3", "--log-every", "5"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model) -> dict:
    tmp = tmp_path_factory.mktemp("launch")
    train = write_jsonl(tmp / "train.jsonl", viggo_records("train", 80))
    valid = write_jsonl(tmp / "valid.jsonl", viggo_records("valid", 16))
    out = {}
    for launch in ("auto", "ray"):
        proc = ft_train(["-m", tiny_model, "--train", train, "--valid", valid, "-o", tmp / launch, "--launch", launch,
                         *ARGS], tmp)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[launch] = {"proc": proc, "dir": tmp / launch,
                       "manifest": json.loads((tmp / launch / "ft-train.json").read_text())}
    return out


def _metrics(run: dict) -> list[dict]:
    return [json.loads(line) for line in (run["dir"] / "metrics.jsonl").read_text().splitlines()]


def test_one_worker_trains_in_this_process_by_default(runs):
    assert runs["auto"]["manifest"]["resolved"]["launch"] == "local"
    assert runs["ray"]["manifest"]["resolved"]["launch"] == "ray"


def test_the_run_is_the_same_in_process_and_on_a_ray_worker(runs):
    local, ray = _metrics(runs["auto"]), _metrics(runs["ray"])
    assert [r.get("step") for r in local] == [r.get("step") for r in ray]
    for a, b in zip(local, ray, strict=True):
        for key in ("loss", "train_loss", "val_ppl"):
            if key in a:  # the same maths; thread counts may round the last digits differently
                assert a[key] == pytest.approx(b[key], rel=1e-4), (key, a, b)
    assert runs["auto"]["manifest"]["best"]["epoch"] == runs["ray"]["manifest"]["best"]["epoch"]


def test_in_process_stderr_holds_only_ft_train_lines_and_stdout_one_object(runs):
    proc = runs["auto"]["proc"]
    lines = [line for line in proc.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert lines and all(line.startswith("ft-train: ") for line in lines), lines
    assert json.loads(proc.stdout)["epochs"] == 2


def test_local_launch_takes_one_worker(tmp_path, tiny_model):
    proc = ft_train(["-m", tiny_model, "--train", "x.jsonl", "-o", tmp_path / "o", "--launch", "local",
                     "--workers", "2"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ft-train: error: --launch local runs one worker in this process: not with --workers > 1 or --address"]


@pytest.mark.parametrize("launch", ["local", "ray"])
def test_ctrl_c_stops_the_run_with_one_line_and_exit_130(tmp_path, tiny_model, launch):
    """Ray Train's own SIGINT handler would exit 1 without a word; in process, the interrupt
    reaches the training loop. Either way: the workers stop, "ft-train: aborted", exit 130."""
    import signal
    import subprocess
    import time

    from train_support import BIN

    train = write_jsonl(tmp_path / "train.jsonl", viggo_records("train", 40))
    out = tmp_path / "o"
    cmd = [str(BIN / "ft-train"), "-m", str(tiny_model), "--train", str(train), "-o", str(out), "--launch", launch,
           "--epochs", "1000", "--batch-size", "1", "--ctx-len", "64", "--log-every", "1"]
    # SIGINT as a terminal sends it (a child of a background job would start with it ignored)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.time() < deadline, "training never started"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.replace("\r", "\n").strip().splitlines()[-1] == "ft-train: aborted"
    assert stdout == ""
