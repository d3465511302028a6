"""--dry-run: the plan on stdout, nothing trained, nothing left in OUT_DIR."""

from __future__ import annotations

import json

from ft_train import recipe
from train_support import ft_train, viggo_records, write_jsonl


def test_dry_run_prints_the_plan_and_leaves_nothing(tmp_path, tiny_model):
    train = write_jsonl(tmp_path / "train.jsonl", viggo_records("train", 60))
    out = tmp_path / "new" / "run"
    proc = ft_train(["-m", tiny_model, "--train", train, "-o", out, "--dry-run", "--device", "cuda"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads(proc.stdout)
    # the plan one GPU would get, decided on any machine: bf16, the accuracy selection, the recipe's choices
    assert plan["dry_run"] is True and plan["device"] == "cuda" and plan["dtype"] == "bfloat16"
    assert plan["launch"] == "local" and plan["total_steps"] == plan["steps_per_epoch"] * plan["recipe"]["epochs"]
    assert set(plan["recipe"]["chosen"]) == {"lr", "epochs", "batch_tokens", "warmup"}
    # the default lr rule (auto) leaves the lr to the workers, who measure the loss first, only where the
    # loss moves it: not at a tiny model's size (test_lr_from_loss)
    assert plan["recipe"]["lr_rule"] == "auto" and plan["recipe"]["lr"] == recipe.loss_rule_lr(plan["recipe"]["params"], 4.19)
    assert plan["data"]["train"]["records"] == 57  # 5% held out for validation
    # graphs on one GPU; --compile auto leaves a run this small uncompiled, --compile turns it on
    assert (plan["cuda_graphs"], plan["compile"]) == ("on", "off")
    assert [line.split(":")[1].strip() for line in proc.stderr.splitlines()][-1].startswith("plan")
    assert not (tmp_path / "new").exists()
    proc = ft_train(["-m", tiny_model, "--train", train, "-o", out, "--dry-run", "--device", "cuda", "--compile"],
                    tmp_path)
    assert json.loads(proc.stdout)["compile"] == "on" and "CUDA graphs, compiled blocks" in proc.stderr


def test_dry_run_in_an_existing_folder_removes_only_its_own(tmp_path, tiny_model):
    train = write_jsonl(tmp_path / "train.jsonl", viggo_records("train", 60))
    out = tmp_path / "run"
    (out / ".work" / "keep").mkdir(parents=True)
    proc = ft_train(["-m", tiny_model, "--train", train, "-o", out, "--dry-run"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (out / ".work").iterdir()) == ["keep"]
