"""The default lr is chosen from the model's loss on the training targets before any update
(ft_train.recipe.rule_lr, measured by the workers): the rule, the engine's schedule, and runs
in process, on 2 Ray workers under ZeRO-3, and resumed."""

from __future__ import annotations

import json
import math

import pytest
import torch
from ft_train import recipe
from ft_train.config import TrainConfig
from train_support import ft_train, viggo_records, write_jsonl

QWEN_1_5B = 1_777_100_288


def test_rule_passes_through_the_best_measured_lrs_at_1_5b():
    """Qwen2.5-Coder-1.5B, losses before training as its runs logged them (the ft-train README)."""
    for loss, best in ((1.13, 5e-6), (1.58, 1e-5), (2.66, 2.9e-5)):  # GSM8K, SQL, ViGGO
        assert recipe.rule_lr(QWEN_1_5B, loss) == pytest.approx(best, rel=0.15)
    assert recipe.rule_lr(135_000_000, recipe.LOSS_REF) == pytest.approx(recipe.LR_REF)


def test_rule_rises_with_the_loss_falls_with_size_and_stays_in_bounds():
    assert recipe.rule_lr(QWEN_1_5B, 1.0) < recipe.rule_lr(QWEN_1_5B, 2.0) < recipe.rule_lr(QWEN_1_5B, 3.0)
    assert recipe.rule_lr(135_000_000, 2.0) > recipe.rule_lr(630_000_000, 2.0) > recipe.rule_lr(QWEN_1_5B, 2.0)
    assert recipe.rule_lr(1_000, 12.0) == recipe.LR_MAX
    assert recipe.rule_lr(10**12, 0.01) == recipe.LR_MIN
    for broken in (math.nan, math.inf, 0.0, -1.0):  # no measurement to go by: the reference loss
        assert recipe.rule_lr(QWEN_1_5B, broken) == recipe.rule_lr(QWEN_1_5B)


def test_the_plan_says_the_lr_comes_from_the_loss_unless_given():
    auto = recipe.choose(params=QWEN_1_5B, tokens_per_epoch=360_000, batch_cap=24576)
    assert auto.line(76).startswith("lr from the loss before training (1,777M parameters), ")
    given = recipe.choose(params=QWEN_1_5B, tokens_per_epoch=360_000, batch_cap=24576, lr=3e-5)
    assert given.line(76).startswith("lr 3.0e-05 (given), ")


def _engine(tiny_model, lr=1e-3, warmup=0.5):
    from ft_train.engine import PlainEngine
    from ft_train.worker import CausalLMLoss
    from transformers import AutoModelForCausalLM

    cfg = TrainConfig(lr=lr, batch_size=2, warmup=warmup, ctx_len=16)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    return PlainEngine(CausalLMLoss(model), cfg, torch.device("cpu"), 1, total_steps=10, bf16=True)


def test_set_peak_lr_rescales_the_schedule_and_a_saved_state_keeps_it(tiny_model, tmp_path):
    e = _engine(tiny_model)
    assert e.lr() == pytest.approx(1e-3 / 5)  # warmup: 5 steps, the first at 1/5
    e.set_peak_lr(4e-4)
    assert e.peak_lr() == 4e-4
    assert e.lr() == pytest.approx(4e-4 / 5) and e.optimizer.param_groups[0]["lr"] == pytest.approx(4e-4 / 5)
    for _ in range(6):  # past the warmup: at the peak, then down the cosine
        e.optimizer.step()
        e.scheduler.step()
    assert e.lr() < 4e-4 and e.lr() > 4e-5
    e.save_state(tmp_path, "t", {})
    again = _engine(tiny_model)  # built with the config's lr, as a resumed run's engine is
    again.load_state(tmp_path, "t")
    assert again.peak_lr() == 4e-4 and again.lr() == pytest.approx(e.lr())


def test_set_peak_lr_fills_a_device_tensor_lr_in_place(tiny_model):
    """Under CUDA graphs the optimizer's lr is a tensor the graphs captured: it must stay that tensor."""
    e = _engine(tiny_model)
    group = e.optimizer.param_groups[0]
    group["lr"] = tensor = torch.tensor(float(group["lr"]))
    e.set_peak_lr(2e-4)
    assert group["lr"] is tensor and tensor.item() == pytest.approx(2e-4 / 5)


ARGS = ["--epochs", "1", "--batch-size", "4", "--ctx-len", "128", "--log-every", "5", "--seed", "0"]


def _run(tmp_path, tiny_model, name, *extra):
    train = write_jsonl(tmp_path / "train.jsonl", viggo_records("train", 64))
    valid = write_jsonl(tmp_path / "valid.jsonl", viggo_records("valid", 8))
    out = tmp_path / name
    proc = ft_train(["-m", tiny_model, "--train", train, "--valid", valid, "-o", out, *ARGS, *extra], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return proc, rows, json.loads((out / "ft-train.json").read_text())


def _check_chosen(proc, rows, man):
    first = rows[0]
    assert first["step"] == 0 and set(first) == {"step", "loss_before", "lr_chosen", "time"}
    lr, loss = first["lr_chosen"], first["loss_before"]
    recipe_ = man["resolved"]["recipe"]
    assert lr == pytest.approx(recipe.rule_lr(recipe_["params"], loss))
    # what trained, and what the manifest and the checkpoint's config say, is that lr
    assert man["config"]["lr"] == lr and recipe_["lr"] == lr and recipe_["loss_before"] == loss
    steps = [r for r in rows if "loss" in r]
    assert steps[0]["step"] == 1 and max(r["lr"] for r in steps) <= lr * (1 + 1e-9)
    assert f"ft-train: lr {lr:.1e} (loss {loss:.2f} on the training targets before any update)" in proc.stderr
    assert "ft-train: plan: lr from the loss before training (" in proc.stderr


def test_a_plain_run_measures_the_loss_first_and_trains_at_the_rule_s_lr(tmp_path, tiny_model):
    _check_chosen(*_run(tmp_path, tiny_model, "plain"))


def test_a_given_lr_is_used_as_is_with_no_measurement(tmp_path, tiny_model):
    _, rows, man = _run(tmp_path, tiny_model, "given", "--lr", "1e-3")
    assert rows[0]["step"] == 1 and not any("lr_chosen" in r for r in rows)
    assert man["config"]["lr"] == 1e-3 and "loss_before" not in man["resolved"]["recipe"]


def test_two_zero3_workers_measure_the_same_number_of_batches(tmp_path, tiny_model):
    """Every ZeRO-3 rank must run the same forwards (they gather each layer together): a rank that
    measured one batch more would hang the run."""
    proc, rows, man = _run(tmp_path, tiny_model, "zero3", "--workers", "2", "--zero", "3")
    assert man["resolved"]["zero"] == 3 and man["resolved"]["workers"] == 2
    _check_chosen(proc, rows, man)
