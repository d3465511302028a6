"""ft-train end to end on the CPU, through the real path: Ray Train, 2 workers (gloo),
DeepSpeed ZeRO-3 with CPU optimizer offload, special tokens, 2 epochs of ViGGO."""

from __future__ import annotations

import json

import pytest
from ft_common.models import file_sha256
from ft_common.tasks import END_A, SPECIAL_TOKENS


@pytest.fixture(scope="module")
def run(e2e_run):
    proc = e2e_run["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    return e2e_run


def test_stdout_is_one_json_object(run):
    lines = run["proc"].stdout.splitlines()
    assert len(lines) == 1, run["proc"].stdout[:2000]
    result = json.loads(lines[0])
    assert set(result) == {"best", "best_val_ppl", "epochs"}
    assert result["epochs"] == 2
    assert (run["out"] / "best").resolve() == (run["out"] / "checkpoints" / "epoch-2").resolve()
    assert result["best"].endswith("checkpoints/epoch-2")
    print(f"e2e run took {run['seconds']:.1f}s")


def test_stderr_holds_only_ft_train_lines(run):
    """At the default verbosity Ray's, DeepSpeed's and the workers' output goes to OUT_DIR/ft-train.log:
    the terminal gets the summary, the plan, one line per epoch and the result."""
    lines = [line for line in run["proc"].stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("ft-train: ") for line in lines), run["proc"].stderr[-3000:]
    assert any(line.startswith("ft-train: plan: ") for line in lines)
    assert [line for line in lines if line.startswith("ft-train: epoch ")][-1].startswith("ft-train: epoch 2/2: ")
    log = (run["out"] / "ft-train.log").read_text()
    assert "RayTrainWorker" in log  # what the terminal was spared is kept


def test_loss_falls(run):
    rows = [json.loads(line) for line in (run["out"] / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    epochs = [r for r in rows if "val_ppl" in r]
    assert {"step", "loss", "lr", "tokens_per_s", "epoch"} <= set(steps[0])
    # step 1: the loss before any update; step 2: the first ETA; then every --log-every
    assert [r["step"] for r in steps[:3]] == [1, 2, 5]
    assert steps[-1]["loss"] < 0.6 * steps[0]["loss"], (steps[0], steps[-1])
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[1]["val_ppl"] < epochs[0]["val_ppl"]
    assert epochs[1]["train_loss"] < epochs[0]["train_loss"]
    assert (run["out"] / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_manifest(run, e2e_files, tiny_model):
    man = json.loads((run["out"] / "ft-train.json").read_text())
    assert man["resolved"]["zero"] == 3 and man["resolved"]["offload"] == "optimizer"
    assert man["resolved"]["workers"] == 2 and man["resolved"]["deepspeed"] is True
    assert man["parent"]["source"] == "folder" and len(man["parent"]["sha256"]) == 64
    assert man["data"]["train"]["sha256"] == file_sha256(e2e_files["train"])
    assert man["data"]["valid"]["sha256"] == file_sha256(e2e_files["valid"])
    assert man["data"]["train"]["records"] == 400 and man["data"]["train"]["truncated"] > 0
    assert man["config"]["special_tokens"] == list(SPECIAL_TOKENS) and man["config"]["stop"] == END_A
    assert man["versions"]["torch"] and man["versions"]["deepspeed"] and man["versions"]["ray"]
    assert man["best"]["epoch"] == 2 and man["lineage"] == []
    ckpt = run["out"] / "best"
    assert json.loads((ckpt / "ft-train-config.json").read_text())["lr"] == 3e-3
    assert json.loads((ckpt / "ft-train.json").read_text())["best"] == man["best"]


def test_best_checkpoint_loads_and_stops_at_end_a(run, e2e_files):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt = run["out"] / "best"
    assert (ckpt / "model.safetensors").is_file()
    tok = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    for t in SPECIAL_TOKENS:
        assert len(tok.encode(t, add_special_tokens=False)) == 1
    end_id = tok.convert_tokens_to_ids(END_A)
    rows = model.get_input_embeddings().weight.shape[0]  # every token's, in whole multiples of 64 (aligned logits)
    assert rows == model.config.vocab_size and len(tok) <= rows < len(tok) + 64 and rows % 64 == 0
    assert model.generation_config.eos_token_id[0] == end_id
    records = [json.loads(line) for line in e2e_files["valid"].read_text().splitlines()][:12]
    ended = 0
    for r in records:
        ids = tok(r["prompt"], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=64, do_sample=False)
        ended += int(out[0, -1]) == end_id
    # A 2-layer, 64-dim random model after 2 short epochs: most, not always all, answers end.
    assert ended >= 9, f"{ended}/12 greedy generations ended at {END_A}"


def test_timing(run):
    """The manifest's timing block: seconds before the first step, in training, after the last,
    and every phase mark in order; the checkpoints' copies carry none."""
    man = json.loads((run["out"] / "ft-train.json").read_text())
    t, phases = man["timing"], man["timing"]["phases"]
    expected = ["imported", "data_read", "model_resolved", "tokenized", "prepare", "ray_init", "worker_start",
                "workers_ready", "first_step", "last_epoch_end", "checkpoint_written", "fit_returned", "ray_shutdown",
                "exit"]
    # the marks, in the order they happen (a repeat run also marks when its tokens came from the cache)
    assert [p for p in phases if p != "token_cache_hit"] == expected, phases
    assert all(v >= 0 for v in phases.values())
    assert t["start_to_first_step_s"] == phases["first_step"] > 0
    assert t["last_step_to_exit_s"] == pytest.approx(phases["exit"] - phases["last_epoch_end"], abs=1e-3)
    assert t["train_s"] == pytest.approx(sum(e["train_s"] for e in man["epochs"]), abs=1e-2)
    assert t["eval_s"] == pytest.approx(sum(e["eval_s"] for e in man["epochs"]), abs=1e-2)
    assert t["train_s"] + t["eval_s"] <= phases["last_epoch_end"] - phases["first_step"] + 0.01
    assert phases["exit"] <= run["seconds"]  # the marks count from the process's start
    assert "timing" not in json.loads((run["out"] / "best" / "ft-train.json").read_text())
    last = run["proc"].stderr.strip().splitlines()[-1]
    assert "s to the first step, " in last and "s after the last)" in last, last
