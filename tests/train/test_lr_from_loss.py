"""--lr-rule loss: the lr is chosen from the model's loss on the training targets before any update
(ft_train.recipe.loss_rule_lr, measured by the workers): the rule, the engine's schedule, and runs
in process and on 2 Ray workers under ZeRO-3; a saved state keeps the chosen lr. The default,
--lr-rule auto, measures only where the loss moves the lr (above 135M)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from ft_train import recipe
from ft_train.config import TrainConfig
from train_support import ft_train, viggo_records, write_jsonl

QWEN_1_5B = 1_777_100_288


def test_rule_passes_near_the_best_measured_lrs():
    """Losses before training from bench/loss_before.py, best lrs from the GPU runs (the ft-train README)."""
    for loss, best in ((1.19, 5e-6), (1.71, 1e-5), (3.23, 2.9e-5)):  # Qwen2.5-Coder-1.5B: GSM8K, SQL, ViGGO
        assert recipe.loss_rule_lr(QWEN_1_5B, loss) == pytest.approx(best, rel=0.2)
    assert 1e-5 < recipe.loss_rule_lr(630_174_592, 1.77) < 1.7e-5  # the 0.5B on SQL: 1e-5 beat 3.3e-5
    assert recipe.loss_rule_lr(135_000_000, recipe.LOSS_REF) == pytest.approx(recipe.LR_REF)  # SmolLM2 on ViGGO
    # at 135M 2e-4 beat the loss's lower rates, paired (GSM8K 8.8% vs 3.5% at 3.5e-5; Spider 58.2% vs
    # 48.6% at 4.5e-5): the loss does not move a 135M model's lr, and moves it less below 0.63B
    for loss in (1.75, 1.98, 4.19):
        assert recipe.loss_rule_lr(134_515_008, loss) == pytest.approx(recipe.LR_REF, rel=0.01)
    assert 0 < recipe.loss_exponent(300_000_000) < recipe.LOSS_EXPONENT == recipe.loss_exponent(630_174_592)


def test_rule_rises_with_the_loss_falls_with_size_and_stays_in_bounds():
    assert recipe.loss_rule_lr(QWEN_1_5B, 1.0) < recipe.loss_rule_lr(QWEN_1_5B, 2.0) < recipe.loss_rule_lr(QWEN_1_5B, 3.0)
    assert recipe.loss_rule_lr(135_000_000, 2.0) > recipe.loss_rule_lr(630_000_000, 2.0) > recipe.loss_rule_lr(QWEN_1_5B, 2.0)
    assert recipe.loss_rule_lr(1_000, 12.0) == recipe.LR_MAX
    assert recipe.loss_rule_lr(10**12, 0.01) == recipe.LOSS_LR_MIN
    for broken in (math.nan, math.inf, 0.0, -1.0):  # no measurement to go by: the size rule's
        assert recipe.loss_rule_lr(QWEN_1_5B, broken) == recipe.rule_lr(QWEN_1_5B)


def test_the_plan_says_the_lr_comes_from_the_loss_unless_given():
    auto = recipe.choose(params=QWEN_1_5B, tokens_per_epoch=360_000, batch_cap=24576, lr_rule="loss")
    assert auto.line(76).startswith("lr from the loss before training (1,777M parameters), ")
    given = recipe.choose(params=QWEN_1_5B, tokens_per_epoch=360_000, batch_cap=24576, lr=3e-5, lr_rule="loss")
    assert given.line(76).startswith("lr 3.0e-05 (given), ")
    size = recipe.choose(params=QWEN_1_5B, tokens_per_epoch=360_000, batch_cap=24576)
    assert size.line(76).startswith("lr 1.0e-05 (1777M parameters), ")


def test_auto_measures_the_loss_only_where_it_moves_the_lr():
    """The default: at 1.5B the loss rule as --lr-rule loss; at 135M and below (loss exponent 0) no
    measurement (55 s of a CPU run's start) and the lr any measured loss would have given."""
    large = recipe.choose(params=QWEN_1_5B, tokens_per_epoch=360_000, batch_cap=24576, lr_rule="auto")
    assert large.lr_from_loss and large.line(76).startswith("lr from the loss before training (1,777M parameters), ")
    for params in (134_515_008, 1_000_000):
        small = recipe.choose(params=params, tokens_per_epoch=360_000, batch_cap=24576, lr_rule="auto")
        assert not small.lr_from_loss and "lr" in small.chosen
        assert small.lr == recipe.loss_rule_lr(params, 1.75) == recipe.loss_rule_lr(params, 4.19)
        assert small.line(76).startswith(f"lr {small.lr:.1e} ({params / 1e6:.0f}M parameters: at this size the loss")
        measured = recipe.choose(params=params, tokens_per_epoch=360_000, batch_cap=24576, lr_rule="loss")
        assert measured.lr_from_loss  # --lr-rule loss measures anyway, to record the loss
    given = recipe.choose(params=QWEN_1_5B, tokens_per_epoch=360_000, batch_cap=24576, lr=3e-5, lr_rule="auto")
    assert not given.lr_from_loss and given.lr == 3e-5


def _engine(tiny_model, lr=1e-3, warmup=0.5):
    from ft_train.engine import PlainEngine
    from ft_train.worker import CausalLMLoss
    from transformers import AutoModelForCausalLM

    cfg = TrainConfig(lr=lr, batch_size=2, warmup=warmup, ctx_len=16, layout="group")
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


ARGS = ["--epochs", "1", "--batch-size", "4", "--ctx-len", "128", "--log-every", "5", "--seed", "0", "--lr-rule", "loss"]


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
    assert lr == pytest.approx(recipe.loss_rule_lr(recipe_["params"], loss))
    # what trained, and what the manifest and the checkpoint's config say, is that lr
    assert man["config"]["lr"] == lr and recipe_["lr"] == lr and recipe_["loss_before"] == loss
    steps = [r for r in rows if "loss" in r]
    assert steps[0]["step"] == 1 and max(r["lr"] for r in steps) <= lr * (1 + 1e-9)
    assert f"ft-train: lr {lr:.1e} (loss {loss:.2f} on the training targets before any update)" in proc.stderr
    assert "ft-train: plan: lr from the loss before training (" in proc.stderr


def test_a_run_measures_the_loss_first_and_trains_at_the_rule_s_lr(tmp_path, tiny_model):
    _check_chosen(*_run(tmp_path, tiny_model, "plain"))


def test_the_default_size_rule_measures_nothing(tmp_path, tiny_model):
    _, rows, man = _run(tmp_path, tiny_model, "size", "--lr-rule", "size")
    assert rows[0]["step"] == 1 and not any("lr_chosen" in r for r in rows)
    assert man["config"]["lr"] == recipe.rule_lr(man["resolved"]["recipe"]["params"])


def test_the_default_at_a_small_model_trains_at_the_rule_s_lr_without_measuring(tmp_path, tiny_model):
    args = [a for a in ARGS if a not in ("--lr-rule", "loss")]
    train = write_jsonl(tmp_path / "train.jsonl", viggo_records("train", 64))
    valid = write_jsonl(tmp_path / "valid.jsonl", viggo_records("valid", 8))
    out = tmp_path / "auto"
    proc = ft_train(["-m", tiny_model, "--train", train, "--valid", valid, "-o", out, *args], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    man = json.loads((out / "ft-train.json").read_text())
    params = man["resolved"]["recipe"]["params"]
    assert rows[0]["step"] == 1 and not any("lr_chosen" in r for r in rows)
    assert man["config"]["lr"] == recipe.loss_rule_lr(params, recipe.LOSS_REF) and man["resolved"]["recipe"]["lr_rule"] == "auto"
    assert "at this size the loss would not move it" in proc.stderr and "before any update)" not in proc.stderr


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


def test_the_worker_trains_at_the_lr_it_chose_and_records_it(tiny_model, tmp_path):
    """The wiring without Ray: a worker whose plan left the lr to it measures the loss, sets the
    engine's schedule, and the config and recipe its checkpoints record. (A tiny model's rule
    lr is LR_MAX whatever its loss; here the plan claims 1.78B parameters, so it is not.)"""
    from types import SimpleNamespace

    from ft_train.data import make_batches
    from ft_train.plan import Plan, Zero
    from ft_train.worker import Metrics, Worker

    e = _engine(tiny_model, lr=1e-3, warmup=0.5)
    rows = [{"ids": [10 + i, 11 + i, 12 + i, 13 + i], "labels": [11 + i, 12 + i, 13 + i, -100]} for i in range(40)]
    batches = make_batches(rows, "group", 4, 4096, 16, seed=0)
    plan = Plan(cfg=e.cfg, tokenizer_dir="", stop_id=None, device="cpu", zero=Zero(0, "none", True, False),
                train_batches=[batches], valid_batches=[], steps_per_epoch=10, parent={}, data={}, lineage=[],
                recipe={"lr": None, "lr_rule": "loss", "chosen": ["lr"], "params": QWEN_1_5B})
    worker = Worker.__new__(Worker)
    worker.plan, worker.cfg, worker.engine, worker.rank, worker.world, worker.pad_id = plan, e.cfg, e, 0, 1, 0
    worker.ckpt = SimpleNamespace(cfg=e.cfg)
    worker.metrics = Metrics(tmp_path / "metrics.jsonl", 0, None)
    worker.adopt_lr(worker.lr_from_loss())
    worker.metrics.close()

    step0 = json.loads((tmp_path / "metrics.jsonl").read_text())
    lr, loss = step0["lr_chosen"], step0["loss_before"]
    assert loss > 0 and lr == pytest.approx(recipe.loss_rule_lr(QWEN_1_5B, loss)) and lr != pytest.approx(1e-3)
    assert e.peak_lr() == lr and e.optimizer.param_groups[0]["lr"] == pytest.approx(lr / 5)
    assert worker.cfg.lr == lr and worker.ckpt.cfg.lr == lr and worker.plan.cfg.lr == lr
    assert worker.plan.recipe["lr"] == lr and worker.plan.recipe["loss_before"] == loss
    assert e.module.training  # the measurement left the model in training mode


def test_loss_before_bench_gives_the_loss_the_run_measured(tmp_path, tiny_model):
    """bench/loss_before.py (the README table's losses) on a run's files and flags: the loss that run's
    workers measured at step 0, and the rule's lr for it. (Without the run's --valid the plan holds
    part of the training file out and measures other batches: the bench once did.)"""
    import subprocess
    import sys
    from pathlib import Path

    _, rows, _ = _run(tmp_path, tiny_model, "run")
    out = tmp_path / "losses.jsonl"
    script = Path(__file__).resolve().parents[2] / "bench" / "loss_before.py"
    proc = subprocess.run([sys.executable, str(script), "--model", str(tiny_model), "--train", str(tmp_path / "train.jsonl"),
                           "--valid", str(tmp_path / "valid.jsonl"), "--plan", "cpu", "--ft-args", " ".join(ARGS),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(out.read_text())
    assert row == json.loads(proc.stdout.splitlines()[-1])
    assert row["batches"] == recipe.PROBE_BATCHES and row["loss_before"] == pytest.approx(rows[0]["loss_before"], rel=1e-4)
    assert row["lr"] == pytest.approx(rows[0]["lr_chosen"], rel=1e-2)
    assert 0 < row["task_tokens"] <= row["loss_tokens"] and len(row["batch_losses"]) == row["batches"]


def test_loss_before_bench_names_a_bad_record_in_one_line(tmp_path, tiny_model):
    import subprocess
    import sys
    from pathlib import Path

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(viggo_records("train", 1)[0]) + "\n" + '{"prompt": 5}\n')
    script = Path(__file__).resolve().parents[2] / "bench" / "loss_before.py"
    proc = subprocess.run([sys.executable, str(script), "--model", str(tiny_model), "--train", str(bad)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"loss_before: error: {bad}:2: record #2: non-string 'prompt' (ft-train needs prompt and target; see ft-prep)"]


def test_loss_before_bench_names_a_bad_ft_args_flag_in_one_line(tmp_path, tiny_model):
    import subprocess
    import sys
    from pathlib import Path

    train = write_jsonl(tmp_path / "train.jsonl", viggo_records("train", 4))
    script = Path(__file__).resolve().parents[2] / "bench" / "loss_before.py"
    for flags, says in (("--lr -1", "Invalid value for '--lr'"), ('"open', "No closing quotation")):
        proc = subprocess.run([sys.executable, str(script), "--model", str(tiny_model), "--train", str(train),
                               f"--ft-args={flags}"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"loss_before: error: --ft-args {flags!r}: {says}")
