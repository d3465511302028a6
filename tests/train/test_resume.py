"""Kill a run mid-epoch (SIGKILL, after some training state was saved), resume it, and
check the resumed run ends with the same number of steps and a comparable loss as the
uninterrupted run (the e2e run: same data, same flags)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from train_support import BIN, E2E_ARGS, ft_train


def _latest(out):
    path = out / "state" / "latest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_kill_mid_epoch_then_resume(tmp_path, tiny_model, e2e_files, e2e_run):
    out = tmp_path / "run"
    args = [str(BIN / "ft-train"), "-m", str(tiny_model), "--train", str(e2e_files["train"]),
            "--valid", str(e2e_files["valid"]), "-o", str(out), *E2E_ARGS, "--save-every", "20"]
    # A new session, so the kill takes the driver and the Ray processes it started, and nothing else.
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    killed_at = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            info = _latest(out)
            if info and info["step"] >= 60:
                killed_at = info
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    assert killed_at is not None, "no training state was saved before the deadline"
    # The Ray workers notice their node is gone at their next step and stop; wait until nothing moves.
    time.sleep(3)
    saved = _latest(out)
    assert saved["epoch"] == 0 and saved["batch"] > 0, saved  # the state to resume from is mid-epoch
    assert saved["step"] <= killed_at["step"] + 20, (killed_at, saved)
    assert not (out / "checkpoints" / "epoch-1").exists()

    resumed = ft_train(["-m", tiny_model, "--train", e2e_files["train"], "--valid", e2e_files["valid"],
                        "-o", out, *E2E_ARGS, "--save-every", "20", "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"ft-train: resumed at step {saved['step']} (epoch 1, batch {saved['batch']})" in resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["epochs"] == 2

    whole = json.loads((e2e_run["out"] / "ft-train.json").read_text())
    again = json.loads((out / "ft-train.json").read_text())
    assert again["resolved"]["total_steps"] == whole["resolved"]["total_steps"]
    assert [e["step"] for e in again["epochs"]] == [e["step"] for e in whole["epochs"]]
    for a, b in zip(again["epochs"], whole["epochs"], strict=True):
        assert abs(a["val_ppl"] - b["val_ppl"]) / b["val_ppl"] < 0.05, (a, b)
        assert abs(a["train_loss"] - b["train_loss"]) / b["train_loss"] < 0.05, (a, b)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == sorted(set(steps)), "metrics.jsonl repeats or skips steps after the resume"
