"""The memory plan on a GPU: the activation estimate against measured peaks, the default batch cap
counting the model's state, and a given batch too large for the GPU split into micro-batches.

No GPU and no weights needed: the planner reads the GPU's memory through plan.gpu_memory (patched
here to an H100 80GB's) and the model's size from its config on the meta device."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ft_train import plan as plan_mod
from ft_train.config import TrainConfig
from ft_train.data import default_batch_tokens, tokens_per_batch
from ft_train.engine import ZERO_BUDGET, activation_estimate, choose_zero, zero0_state
from ft_train.plan import memory_fits, split_to_fit
from ft_train.recipe import Recipe, choose
from transformers import AutoTokenizer, LlamaConfig, Qwen2Config

GiB = 2**30
H100 = int(79.2 * GiB)  # torch.cuda.get_device_properties(0).total_memory of an H100 80GB

QWEN_1_5B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=False)  # 1,777,088,000 parameters
SMOL_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True)  # 134,515,008 parameters
QWEN_PARAMS, SMOL_PARAMS = 1_777_088_000, 134_515_008


@pytest.fixture
def h100(monkeypatch):
    monkeypatch.setattr(plan_mod, "gpu_memory", lambda: H100)


def gpu_cfg(**kw) -> TrainConfig:
    return TrainConfig(device="cuda", **kw)


@pytest.mark.parametrize("shape, params, tokens, measured_gib", [
    (QWEN_1_5B, QWEN_PARAMS, 4096, 40.0),  # ViGGO rows
    (QWEN_1_5B, QWEN_PARAMS, 4096, 39.6),  # 2 rows of 2,048 tokens
    (QWEN_1_5B, QWEN_PARAMS, 16384, 73.2),  # after 2 steps, then out of memory
    (SMOL_135M, SMOL_PARAMS, 6144, 7.39),
])
def test_the_estimate_brackets_the_peaks_measured_on_an_h100(shape, params, tokens, measured_gib):
    config = (Qwen2Config if shape is QWEN_1_5B else LlamaConfig)(**shape)
    estimate = (zero0_state(params, True) + activation_estimate(config, tokens, True, False)) / GiB
    assert 0.9 * measured_gib <= estimate <= 1.25 * measured_gib, estimate


def test_the_estimate_counts_the_mlp():
    qwen = Qwen2Config(**QWEN_1_5B)

    def layer(checkpointing=False, config=qwen):  # one layer's activations, 4,096 tokens
        def estimate(layers):
            return activation_estimate(SimpleNamespace(**{**vars(config), "num_hidden_layers": layers}), 4096,
                                       True, checkpointing)
        return estimate(29) - estimate(28)

    assert layer() == 4096 * 2 * (10 * 1536 + 4 * 8960)  # bf16 values: 10 x hidden + 4 x intermediate
    assert 28 * layer() / 4096 / 2**20 == pytest.approx(2.73, abs=0.01)  # measured: ~2.70 MiB a token
    no_intermediate = SimpleNamespace(hidden_size=1536, vocab_size=151936)  # a config without one: 4 x hidden
    assert layer(config=no_intermediate) == 4096 * 2 * (10 * 1536 + 4 * 4 * 1536)
    assert layer(checkpointing=True) == 4096 * 2 * 2 * 1536


def test_16k_tokens_at_1_5b_do_not_fit_an_h100():
    qwen = Qwen2Config(**QWEN_1_5B)
    assert zero0_state(QWEN_PARAMS, True) + activation_estimate(qwen, 16384, True, False) > ZERO_BUDGET * H100
    assert zero0_state(QWEN_PARAMS, True) + activation_estimate(qwen, 8192, True, False) <= ZERO_BUDGET * H100
    # --zero auto: 16k tokens leave ZeRO-0 for offload; 8k stay on plain PyTorch
    assert choose_zero(QWEN_PARAMS, activation_estimate(qwen, 16384, True, False), 1, H100, False, True) != (0, "none")
    assert choose_zero(QWEN_PARAMS, activation_estimate(qwen, 8192, True, False), 1, H100, False, True) == (0, "none")


def test_the_default_cap_counts_the_model_state(h100):
    qwen, smol = Qwen2Config(**QWEN_1_5B), LlamaConfig(**SMOL_135M)
    fits = memory_fits(gpu_cfg(), qwen, QWEN_PARAMS, gpu=True)
    assert not fits(12288) and fits(8192)  # 33 GiB of state + 12k tokens' 35 GiB of activations > 67.3 GiB
    assert default_batch_tokens(True, fits, floor=512) == 6144  # halved from 24,576 (activations alone: 24,576)
    assert default_batch_tokens(True, memory_fits(gpu_cfg(), smol, SMOL_PARAMS, gpu=True), floor=512) == 24576
    # the plain ViGGO plan at 135M (README: 10 epochs of 360,847 tokens): as before
    cap = default_batch_tokens(True, memory_fits(gpu_cfg(), smol, SMOL_PARAMS, gpu=True), floor=512)
    r = choose(params=SMOL_PARAMS, tokens_per_epoch=360_847, batch_cap=cap)
    assert r.batch_tokens == 6144 and "batches of 6,144 tokens (~600 steps)" in r.line(62)
    # a CPU: nothing to fit
    assert memory_fits(TrainConfig(device="cpu"), qwen, QWEN_PARAMS, gpu=False)(10**9)


def test_a_model_too_large_for_zero_0_counts_activations_within_60_percent(h100):
    big = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, vocab_size=32000)  # 7B
    fits = memory_fits(gpu_cfg(), big, 6_738_415_616, gpu=True)  # 126 GiB of ZeRO-0 state: ZeRO-3/offload
    assert default_batch_tokens(True, fits, floor=512) == 6144
    assert fits(6144) == (activation_estimate(big, 6144, True, False) <= 0.6 * H100)


def test_a_given_batch_too_large_is_split_into_micro_batches(h100):
    qwen = Qwen2Config(**QWEN_1_5B)
    fits = memory_fits(gpu_cfg(), qwen, QWEN_PARAMS, gpu=True)
    cfg, k = split_to_fit(gpu_cfg(batch_tokens=16384), fits)
    assert (k, cfg.batch_tokens, cfg.grad_accum) == (2, 8192, 2)
    cfg, k = split_to_fit(gpu_cfg(batch_tokens=32768, layout="pack"), fits)  # 64 rows of 512
    assert (k, cfg.batch_tokens, cfg.grad_accum) == (4, 8192, 4)  # 22 rows would fit, but 3 x 22 != 64
    cfg, k = split_to_fit(gpu_cfg(batch_tokens=24576), fits)  # 3 x 8,192 (not 4 x 6,144)
    assert (k, cfg.batch_tokens, cfg.grad_accum) == (3, 8192, 3)
    cfg, k = split_to_fit(gpu_cfg(batch_tokens=4096, batch_size=32), fits)  # 32 sequences of up to 512
    assert (k, cfg.batch_size, cfg.grad_accum, tokens_per_batch(cfg)) == (2, 16, 2, 8192)
    # what fits, and a given --grad-accum, stay as they are
    assert split_to_fit(gpu_cfg(batch_tokens=8192), fits) == (gpu_cfg(batch_tokens=8192), 1)
    assert split_to_fit(gpu_cfg(batch_tokens=65536, grad_accum=2), fits) == (gpu_cfg(batch_tokens=65536,
                                                                                      grad_accum=2), 1)


def test_the_split_keeps_the_batch_and_never_goes_below_one_sequence():
    def split(fits, **kw):
        cfg, k = split_to_fit(TrainConfig(ctx_len=512, layout="group", **kw), fits)
        return k, cfg.batch_size or cfg.batch_tokens, cfg.grad_accum

    two, four = (lambda tokens: tokens <= 1024), (lambda tokens: tokens <= 2048)
    assert split(two, batch_size=6) == (3, 2, 3)
    assert split(two, batch_size=5) == (5, 1, 5)  # 3 x 2 would be 6 sequences a step: 5 x 1 keeps 5
    assert split(four, batch_size=7) == (2, 4, 2)  # no divisor within twice 2 micro-batches: 8 sequences
    assert split(lambda tokens: False, batch_size=5) == (5, 1, 5)  # the least there is
    assert split(lambda tokens: False, batch_tokens=2000) == (4, 500, 4)  # a group batch still takes one record
    assert split(lambda tokens: False, batch_tokens=300) == (1, 300, 1)  # one sequence's worth already


def test_the_recipe_line_says_the_split():
    r = Recipe(lr=3e-5, epochs=1, batch_tokens=16384, chosen=("lr",), micro_batches=2, micro=8192)
    assert "batches of 16,384 tokens (given) as 2 micro-batches of 8,192 (memory): 10 steps/epoch" in r.line(10)
    r = Recipe(lr=3e-5, epochs=1, batch_tokens=4096, batch_size=32, micro_batches=2, micro=16)
    assert "batches of 32 sequences (given) as 2 micro-batches of 16 (memory)" in r.line(10)
    assert "micro" not in Recipe(lr=3e-5, epochs=1, batch_tokens=16384).line(10)


# --- the driver's plan, in process (--dry-run --device cuda), for models of the real shapes ---


def model_folder(path, shape, config_class, tiny_model):
    """A model folder with the given shape's config.json and the tiny model's tokenizer: no weights."""
    config_class(**shape).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory, tiny_model):
    return model_folder(tmp_path_factory.mktemp("qwen-1.5b-shape"), QWEN_1_5B, Qwen2Config, tiny_model)


@pytest.fixture(scope="module")
def smol_folder(tmp_path_factory, tiny_model):
    return model_folder(tmp_path_factory.mktemp("smol-135m-shape"), SMOL_135M, LlamaConfig, tiny_model)


def prepared(tmp_path, model, files, device="cuda", **kw):
    from ft_train.driver import prepare

    cfg = TrainConfig(model=model, train=str(files["train"]), valid=str(files["valid"]),
                      out_dir=str(tmp_path / "run"), device=device, dry_run=True, quiet=True, **kw)
    return prepare(cfg).plan


def test_the_plan_splits_16k_tokens_at_1_5b(tmp_path, h100, qwen_folder, viggo_files, capsys):
    from ft_train.driver import train

    plan = prepared(tmp_path / "gpu", qwen_folder, viggo_files, batch_tokens=16384, layout="pack")
    assert (plan.cfg.batch_tokens, plan.cfg.grad_accum) == (8192, 2)
    assert plan.recipe["batch_tokens"] == 16384 and plan.recipe["micro_batches"] == 2
    assert "batches of 16,384 tokens (given) as 2 micro-batches of 8,192 (memory)" in plan.recipe["line"]
    assert (plan.zero.stage, plan.zero.offload, plan.zero.deepspeed) == (0, "none", False)
    # on a CPU nothing is split: 32 rows of 512 a step there, 2 micro-batches of 16 here, the same steps
    cpu = prepared(tmp_path / "cpu", qwen_folder, viggo_files, device="cpu", batch_tokens=16384, layout="pack")
    assert (cpu.cfg.batch_tokens, cpu.cfg.grad_accum, cpu.recipe["micro_batches"]) == (16384, 1, 1)
    rows = sum(len(b) for b in cpu.train_batches[0])
    assert [len(b) for b in plan.train_batches[0]] == [16] * (rows // 16) + [rows % 16] * (rows % 16 > 0)
    assert [len(b) for b in cpu.train_batches[0]] == [32] * (rows // 32) + [rows % 32] * (rows % 32 > 0)
    assert plan.steps_per_epoch == cpu.steps_per_epoch == -(-rows // 32)
    assert plan.total_steps == cpu.total_steps and plan.cfg.warmup == cpu.cfg.warmup
    # the plan line the command prints
    result = train(TrainConfig(model=qwen_folder, train=str(viggo_files["train"]), valid=str(viggo_files["valid"]),
                               out_dir=str(tmp_path / "cli"), device="cuda", dry_run=True, batch_tokens=16384))
    assert result["dry_run"] and result["recipe"]["micro_batches"] == 2
    assert "batches of 16,384 tokens (given) as 2 micro-batches of 8,192 (memory)" in capsys.readouterr().err


def test_the_plan_respects_a_given_grad_accum(tmp_path, h100, qwen_folder, viggo_files):
    plan = prepared(tmp_path, qwen_folder, viggo_files, batch_tokens=16384, grad_accum=2)
    assert (plan.cfg.batch_tokens, plan.cfg.grad_accum, plan.recipe["micro_batches"]) == (16384, 2, 1)


def test_the_default_plan_at_1_5b_fits(tmp_path, h100, qwen_folder, viggo_files):
    # --epochs 200: enough tokens that the recipe's batch (the run's tokens over 600 steps) meets the cap
    plan = prepared(tmp_path, qwen_folder, viggo_files, epochs=200)
    assert (plan.cfg.batch_tokens, plan.cfg.grad_accum) == (6144, 1)
    assert "batches of 6,144 tokens (~600 steps)" in plan.recipe["line"]


def test_the_135m_plan_is_unchanged(tmp_path, h100, smol_folder, viggo_files):
    plan = prepared(tmp_path, smol_folder, viggo_files, epochs=1000)
    assert plan.cfg.batch_tokens == 24576  # the cap: 24,576 as before
    plan = prepared(tmp_path / "given", smol_folder, viggo_files, batch_tokens=24576)
    assert (plan.cfg.batch_tokens, plan.cfg.grad_accum, plan.recipe["micro_batches"]) == (24576, 1, 1)
