"""The plain command's recipe (ft_train.recipe): each rule, and that a given value always wins."""

import pytest
from ft_train import recipe

# Tokens per epoch of the GPU record files (scripts/make_gpu_data.sh) as ft-train counts them, SmolLM2's tokenizer.
VIGGO, SQL, GSM8K = 360_847, 1_744_397, 1_272_520


def test_lr_falls_with_model_size_within_bounds():
    small, between, mid, large = (recipe.rule_lr(n) for n in (135_000_000, 300_000_000, 630_174_592, 1_777_100_288))
    assert small == recipe.LR_REF
    assert small > between > mid
    # the measured points: 1e-5 beat 3.3e-5 on SQL at 0.5B, and 2.9e-5 on SQL and GSM8K at 1.5B (the ft-train README)
    assert mid == pytest.approx(1e-5) and large == pytest.approx(1e-5)
    assert 1.9 < recipe.LR_EXPONENT < 2.0
    assert recipe.rule_lr(1_000) == recipe.LR_MAX
    assert recipe.rule_lr(10**12) == recipe.LR_MIN


def test_epochs_match_the_tuned_runs_at_135m_and_fall_with_size():
    epochs = {name: recipe.rule_epochs(tokens, 135_000_000) for name, tokens in
              (("viggo", VIGGO), ("sql", SQL), ("gsm8k", GSM8K))}
    assert epochs == {"viggo": 10, "sql": 2, "gsm8k": 3}
    assert recipe.rule_epochs(VIGGO, 1_540_000_000) < epochs["viggo"]
    assert recipe.rule_epochs(10, 135_000_000) == 10  # tiny sets: capped at the case study's 10
    assert recipe.rule_epochs(10**10, 135_000_000) == 1


def test_batch_gives_about_the_target_steps_within_floor_and_cap():
    tokens = recipe.rule_batch_tokens(VIGGO, 10, cap=24576)
    assert tokens % 512 == 0
    assert abs(VIGGO * 10 / tokens - recipe.TARGET_STEPS) < 0.1 * recipe.TARGET_STEPS
    assert recipe.rule_batch_tokens(1_000, 1, cap=24576) == recipe.MIN_BATCH_TOKENS
    assert recipe.rule_batch_tokens(10**9, 10, cap=24576) == 24576
    assert recipe.rule_batch_tokens(1_000, 1, cap=2048) == 2048  # the memory cap beats the floor


def test_warmup_has_a_floor_in_steps():
    assert recipe.rule_warmup(100) == 0.1
    assert recipe.rule_warmup(10_000) == recipe.WARMUP_SHARE
    assert recipe.rule_warmup(200) == 10 / 200


def test_given_values_win_and_are_not_marked_chosen():
    r = recipe.choose(params=135_000_000, tokens_per_epoch=VIGGO, batch_cap=24576, lr=1e-4, epochs=3,
                      batch_tokens=8192, warmup=0.05)
    assert (r.lr, r.epochs, r.batch_tokens, r.warmup, r.chosen) == (1e-4, 3, 8192, 0.05, ())
    auto = recipe.choose(params=135_000_000, tokens_per_epoch=VIGGO, batch_cap=24576)
    assert set(auto.chosen) == {"lr", "epochs", "batch_tokens", "warmup"}
    assert "(given)" not in auto.line(76)
    assert "lr 1.0e-04 (given)" in r.line(50)


def test_a_fixed_batch_size_keeps_the_cap_as_the_token_bound():
    r = recipe.choose(params=135_000_000, tokens_per_epoch=VIGGO, batch_cap=24576, batch_size=32)
    assert r.batch_tokens == 24576 and "batch_tokens" not in r.chosen
    assert "batches of 32 sequences (given)" in r.line(160)
