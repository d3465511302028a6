"""Fast unit tests (no Ray): special tokens, data layout and sharding, config, zero auto."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from ft_common.errors import InputError
from ft_common.tasks import END_A, END_Q, SPECIAL_TOKENS, START_A, START_Q
from ft_train.config import TrainConfig
from ft_train.data import (
    IGNORE,
    collate,
    make_batches,
    pack,
    read_data_file,
    shard,
    tokenize_records,
)
from ft_train.engine import choose_zero
from ft_train.tokens import (
    add_tokens,
    check_tokens,
    resize_embeddings,
    stop_token,
    tokens_from_records,
)
from train_support import end_rank, spawn_ranks, viggo_records


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_special_tokens_become_single_ids_and_round_trip(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    records = viggo_records("train", 50)
    special = tokens_from_records(records)
    assert special == list(SPECIAL_TOKENS)
    assert len(tok.encode(END_A, add_special_tokens=False)) > 1  # the tiny tokenizer splits it
    assert add_tokens(tok, special) == 4
    check_tokens(tok, special, records, "train.jsonl")
    assert all(len(tok.encode(t, add_special_tokens=False)) == 1 for t in special)
    assert stop_token(records, special) == END_A


def test_batched_backend_encoding_matches_the_tokenizer_call(tiny_model):
    """check_tokens calls the fast tokenizer's backend directly: the same ids and texts as
    tokenizer(...) and batch_decode(...), added special tokens included."""
    from ft_train.tokens import _decode, _encode
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    records = viggo_records("train", 50)
    add_tokens(tok, tokens_from_records(records))
    texts = [r["prompt"] + r["target"] for r in records] + ["", "  two  spaces ", "naïve 東京 \t"]
    want = [list(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    assert _encode(tok, texts) == want
    assert any(tok.convert_tokens_to_ids(END_A) in ids for ids in want)
    assert _decode(tok, want) == tok.batch_decode(want, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    tok.backend_tokenizer.enable_truncation(max_length=4)  # as a tokenizer.json may carry: tokenizer(...) clears it
    assert _encode(tok, texts) == want


def test_check_rejects_a_token_that_splits(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    with pytest.raises(InputError, match="not exactly one"):
        check_tokens(tok, [END_A], [], "x")  # never added


def test_check_rejects_prompt_target_that_merge(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    add_tokens(tok, list(SPECIAL_TOKENS))
    # No special token between prompt and target: "inf" + "orm" tokenise differently together.
    with pytest.raises(InputError, match="record r/1"):
        check_tokens(tok, list(SPECIAL_TOKENS), [{"id": "r/1", "prompt": "inf", "target": "orm(x)"}], "x")
    # Checked in one batch: the first bad record in file order is the one named, good ones pass.
    good = {"id": "r/0", "prompt": f"{START_Q}hi{END_Q}{START_A}", "target": f"inform(x){END_A}"}
    check_tokens(tok, list(SPECIAL_TOKENS), [good, good], "x")
    bad = [good, {"id": "r/2", "prompt": "inf", "target": "orm(x)"}, {"id": "r/3", "prompt": "inf", "target": "orm"}]
    with pytest.raises(InputError, match="record r/2"):
        check_tokens(tok, list(SPECIAL_TOKENS), bad, "x")


def test_resize_initialises_new_rows_to_the_mean(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    old = model.get_input_embeddings().weight.detach().clone()
    resize_embeddings(model, old.shape[0] + 4)
    new = model.get_input_embeddings().weight.detach()
    # rounded up to whole multiples of 64 rows (aligned logits for the GPU's matmuls)
    assert new.shape[0] == model.config.vocab_size == -(-(old.shape[0] + 4) // 64) * 64
    assert torch.allclose(new[:old.shape[0]], old)
    for row in new[old.shape[0]:]:
        assert torch.allclose(row, old.mean(0), atol=1e-6)


def test_embedding_rows_round_up_and_never_shrink():
    from ft_train.tokens import embedding_rows

    assert embedding_rows(49156, 49152) == 49216  # SmolLM2 and ft's 4 task tokens
    assert embedding_rows(151940, 151936) == 152000  # a GGUF Qwen2.5's tokenizer (its spare rows named)
    assert embedding_rows(151669, 151936) == 151936  # the Hugging Face Qwen2.5's: the spare rows suffice
    assert embedding_rows(100, 100) == 128  # an unaligned model grows even without new tokens


def test_labels_cover_the_target_only(tokenizer):
    add_tokens(tokenizer, list(SPECIAL_TOKENS))
    rec = viggo_records("train", 1)[0]
    (row,), truncated = tokenize_records([rec], tokenizer, 512, "target")
    n_prompt = len(tokenizer.encode(rec["prompt"]))
    assert truncated == 0
    learned = [i for i, x in enumerate(row["labels"]) if x != IGNORE]
    assert learned[0] == n_prompt - 1  # position of <START_A> predicts the first target token
    assert tokenizer.decode([row["labels"][i] for i in learned]) == rec["target"]
    (row_all,), _ = tokenize_records([rec], tokenizer, 512, "all")
    assert sum(x != IGNORE for x in row_all["labels"]) == len(row_all["ids"]) - 1
    (short,), truncated = tokenize_records([rec], tokenizer, 10, "target")
    assert truncated == 1 and len(short["ids"]) == 10


@pytest.mark.parametrize("bos", [False, True])
def test_rows_from_the_checked_pieces_equal_tokenising_again(tiny_model, bos):
    """prepare tokenises once: the ids check_tokens computed, with the tokenizer's own special
    tokens put around the prompt (a BOS here), give exactly the rows of tokenising again."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    if bos:
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)])
    add_tokens(tok, list(SPECIAL_TOKENS))
    records = viggo_records("train", 30)
    pieces = check_tokens(tok, list(SPECIAL_TOKENS), records, "train.jsonl")
    from_pieces = tokenize_records(records, tok, 64, "target", pieces)
    again = tokenize_records(records, tok, 64, "target")
    assert from_pieces == again and again[1] > 0  # some were truncated at 64 tokens
    assert (again[0][0]["ids"][0] == tok.bos_token_id) == bos


def _rows(lengths):
    return [{"ids": list(range(1, n + 1)), "labels": [IGNORE] + list(range(2, n + 1)) + [IGNORE]}
            for n in lengths]


def test_pack_fits_and_keeps_every_row():
    rows = [{"ids": [7] * n, "labels": [7] * n} for n in (50, 30, 80, 20, 60, 10)]
    bins = pack(rows, 100)
    assert all(sum(len(r["ids"]) for r in b) <= 100 for b in bins)
    assert sorted(len(r["ids"]) for b in bins for r in b) == [10, 20, 30, 50, 60, 80]
    assert len(bins) == 3


def test_packed_batch_restarts_positions_and_has_no_mask():
    rows = [{"ids": [5, 6, 7], "labels": [6, 7, IGNORE]}, {"ids": [8, 9], "labels": [9, IGNORE]}]
    x = collate([[rows[0], rows[1]]], "pack", 16, pad_id=0)
    assert x["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert "attention_mask" not in x
    assert x["loss_index"].tolist() == [0, 1, 3] and x["loss_labels"].tolist() == [6, 7, 9]
    dummy = collate([[rows[0]]], "pack", 16, pad_id=0, real=False)
    assert dummy["loss_index"].numel() == 0
    padded = collate([[rows[0]], [rows[1]]], "pad", 6, pad_id=0)
    assert padded["input_ids"].shape == (2, 6) and padded["attention_mask"].tolist()[1] == [1, 1, 0, 0, 0, 0]


def test_packed_attention_is_block_diagonal(tiny_model):
    """Two records packed in one row give the same logits as each alone."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    a = {"ids": [10, 11, 12, 13], "labels": [IGNORE] * 4}
    b = {"ids": [20, 21, 22], "labels": [IGNORE] * 3}
    x = collate([[a, b]], "pack", 16, pad_id=0)
    with torch.no_grad():
        packed = model(input_ids=x["input_ids"], position_ids=x["position_ids"], use_cache=False).logits[0]
        alone_b = model(input_ids=torch.tensor([b["ids"]])).logits[0]
    assert torch.allclose(packed[4:7], alone_b, atol=1e-5)


@pytest.mark.parametrize("layout", ["pack", "group", "pad"])
@pytest.mark.parametrize("batch_size, batch_tokens", [(4, 0), (None, 256)])
def test_every_rank_gets_the_same_number_of_batches(layout, batch_size, batch_tokens):
    rows = _rows([5 + (i * 7) % 40 for i in range(101)])
    batches = make_batches(rows, layout, batch_size, batch_tokens, 64, seed=1)
    shards = [shard(batches, r, 3, multiple=2) for r in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) % 2 == 0
    real = [b for s in shards for b, ok in s if ok]
    assert len(real) == len(batches)  # every batch once, the fill-ins marked not real
    assert make_batches(rows, layout, batch_size, batch_tokens, 64, seed=1) == batches  # a function of the seed
    kept = sorted(tuple(r["ids"]) for b in batches for seq in b for r in seq)
    assert kept == sorted(tuple(r["ids"]) for r in rows)  # every row exactly once


def test_grouped_batches_fit_the_token_budget_with_little_padding():
    rows = _rows([5 + (i * 37) % 120 for i in range(2000)])
    batches = make_batches(rows, "group", None, 1024, 512, seed=3)
    padded = [len(b) * max(len(seq[0]["ids"]) for seq in b) for b in batches]
    assert max(padded) <= 1024
    real = sum(len(r["ids"]) for r in rows)
    assert real / sum(padded) > 0.9  # length grouping: under 10% padding
    assert sum(padded) / len(batches) > 0.8 * 1024  # batches are full


def test_right_padded_rows_need_no_mask(tiny_model):
    """Grouped rows carry no attention mask: causal attention never sees the padding to the right,
    so a real token's logits are the same as the record's alone."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    a = {"ids": [10, 11, 12, 13, 14], "labels": [IGNORE] * 5}
    b = {"ids": [20, 21], "labels": [IGNORE] * 2}
    x = collate([[a], [b]], "group", 16, pad_id=0)
    assert set(x) == {"input_ids", "loss_index", "loss_labels"}
    with torch.no_grad():
        both = model(input_ids=x["input_ids"], use_cache=False).logits
        alone_b = model(input_ids=torch.tensor([b["ids"]])).logits[0]
    assert torch.allclose(both[1, :2], alone_b, atol=1e-5)


def test_loss_model_matches_the_plain_loss(tiny_model):
    """Logits only at label positions give the same loss as full logits + masked cross-entropy."""
    from ft_train.worker import CausalLMLoss
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    rows = [{"ids": [10, 11, 12, 13], "labels": [IGNORE, 12, 13, IGNORE]}, {"ids": [20, 21, 22], "labels": [21, 22, IGNORE]}]
    x = collate([[rows[0]], [rows[1]]], "group", 16, pad_id=0)
    with torch.no_grad():
        got = CausalLMLoss(model)(**x)
        mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])  # the masked reference of the unmasked batch
        logits = model(input_ids=x["input_ids"], attention_mask=mask).logits
    labels = torch.tensor([[IGNORE, 12, 13, IGNORE], [21, 22, IGNORE, IGNORE]])
    want = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum")
    assert torch.allclose(got, want, atol=1e-4)


def test_read_data_file_names_line(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps({"id": "a", "prompt": "p", "target": "t"}) + "\n\n" + json.dumps({"id": "b", "prompt": "p"}) + "\n")
    with pytest.raises(InputError, match=r"t.jsonl:3: record b: missing key 'target'"):
        read_data_file(str(p))


def test_config_round_trips(tmp_path):
    cfg = TrainConfig(model="m", train="t", out_dir="o", lr=3e-4, special_tokens=["<A>"])
    cfg.save(tmp_path / "c.json")
    assert TrainConfig.from_dict(json.loads((tmp_path / "c.json").read_text())) == cfg


def _parse(args: list[str]) -> TrainConfig:
    """The TrainConfig ft-train's flags give (click parses; nothing trains)."""
    import click
    from ft_train.config import cli_options

    @click.command()
    @cli_options
    def cmd(**params):
        return TrainConfig.from_cli(params)

    return cmd.main(["-m", "m", "--train", "t.jsonl", "-o", "o", *args], standalone_mode=False)


def test_flags_come_from_the_config_fields():
    cfg = _parse([])
    # Unset flags take the dataclass defaults (--batch-tokens unset is None on the command line, 0 = auto here).
    assert cfg == TrainConfig(model="m", train="t.jsonl", out_dir="o")
    cfg = _parse(["--pad-to-max", "--special-tokens", __file__, "--zero", "3", "--offload", "all", "--lr", "0.5",
                  "--compile", "--batch-tokens", "64", "--seed", "7", "-q"])
    assert (cfg.layout, cfg.special_tokens_file, cfg.zero, cfg.offload, cfg.lr, cfg.compile, cfg.batch_tokens,
            cfg.seed, cfg.quiet) == ("pad", __file__, "3", "all", 0.5, "on", 64, 7, True)  # --compile alone: on
    assert _parse(["--compile", "off"]).compile == "off"
    import click

    with pytest.raises(click.BadParameter):  # the field's range reaches the flag
        _parse(["--valid-fraction", "0.9"])


def test_config_is_frozen_and_checks_flag_combinations():
    import dataclasses

    from ft_common.errors import UsageError

    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch_tokens = 5  # the driver derives a new config (dataclasses.replace) instead
    with pytest.raises(UsageError, match="--offload needs DeepSpeed ZeRO"):
        TrainConfig(zero="0", offload="optimizer")
    with pytest.raises(UsageError, match="--offload all needs --zero 3"):
        _parse(["--zero", "2", "--offload", "all"])
    with pytest.raises(UsageError, match="only one of --train and --valid"):
        TrainConfig(train="-", valid="-")


def test_zero_auto_rule():
    gib = 1 << 30
    # 135M on an 80 GB GPU: plain training (ZeRO-0), no offload.
    assert choose_zero(135_000_000, 2 * gib, 1, 80 * gib, on_cpu=False) == (0, "none")
    # 7B on one 80 GB GPU: 112 GB of state: offload the optimizer.
    assert choose_zero(7_000_000_000, 10 * gib, 1, 80 * gib, on_cpu=False) == (3, "optimizer")
    # 7B on 8 x 80 GB: ZeRO-2 suffices (weights 28 GB + 84/8 GB).
    assert choose_zero(7_000_000_000, 10 * gib, 8, 80 * gib, on_cpu=False) == (2, "none")
    # 70B on 8 x 80 GB: ZeRO-3 with offload of everything.
    assert choose_zero(70_000_000_000, 10 * gib, 8, 80 * gib, on_cpu=False) == (3, "all")


def test_flat_master_trains_bf16_weights_from_fp32_masters_and_resumes(tiny_model, tmp_path):
    """bf16 training without autocast: the model's weights are bf16 views of one flat buffer,
    the optimizer updates fp32 masters, and the saved state brings back the same masters."""
    from ft_train.engine import PlainEngine
    from ft_train.worker import CausalLMLoss, train_step
    from transformers import AutoModelForCausalLM

    cfg = TrainConfig(lr=1e-2, batch_size=2, grad_clip=1.0, warmup=0.0, ctx_len=16, layout="group")
    rows = [{"ids": [10 + i, 11 + i, 12 + i, 13 + i], "labels": [11 + i, 12 + i, 13 + i, IGNORE]} for i in range(4)]
    batch = [[r] for r in rows]

    def engine():
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        return PlainEngine(CausalLMLoss(model), cfg, torch.device("cpu"), 1, total_steps=30, bf16=True)

    def step(e) -> float:
        micro = train_step(e, batch, True, cfg, pad_id=0)  # the worker's own micro-step
        assert micro.stepped
        return micro.loss_sum.item() / micro.tokens

    e = engine()
    params = list(e.module.parameters())
    assert {p.dtype for p in params} == {torch.bfloat16}
    assert all(p.untyped_storage().data_ptr() == e.master.weights.untyped_storage().data_ptr() for p in params)
    losses = [step(e) for _ in range(12)]
    assert losses[-1] < 0.5 * losses[0]
    assert e.master.overwrite and all(p.grad is None for p in params)  # one micro-batch a step: copied, not added
    assert torch.equal(e.master.weights, e.master.master.detach().to(torch.bfloat16))
    e.save_state(tmp_path, "t", {"step": 12})
    again = engine()
    assert again.load_state(tmp_path, "t") == {"step": 12}
    assert torch.equal(again.master.master, e.master.master)
    assert step(again) == step(e)


def test_default_batch_tokens_halves_until_the_activations_fit():
    from ft_train.data import default_batch_tokens
    from ft_train.engine import activation_estimate
    from transformers import LlamaConfig

    assert default_batch_tokens(False) == 4096 and default_batch_tokens(True) == 24576
    assert default_batch_tokens(True, lambda tokens: tokens <= 7000) == 6144
    assert default_batch_tokens(True, lambda tokens: False, floor=512) == 768  # never below the floor
    small = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                        vocab_size=49152)  # SmolLM2-135M's shape
    big = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      vocab_size=32000)  # a 7B model's shape
    h100 = 80 * 10**9

    def fits(config):
        return lambda tokens: activation_estimate(config, tokens, True, False) <= 0.6 * h100

    assert default_batch_tokens(True, fits(small)) == 24576
    assert default_batch_tokens(True, fits(big)) == 6144


def _ddp_flat_master_worker(rank: int, world: int, model_dir: str, port: int, out: str) -> None:
    import torch.distributed as dist
    from ft_train.engine import PlainEngine
    from ft_train.worker import CausalLMLoss, train_step
    from transformers import AutoModelForCausalLM

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    cfg = TrainConfig(lr=1e-2, batch_size=2, grad_clip=1.0, warmup=0.0, ctx_len=16, layout="group")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    engine = PlainEngine(CausalLMLoss(model), cfg, torch.device("cpu"), world, total_steps=10, bf16=True)
    for step in range(3):  # each rank trains on its own rows: only the gradient all-reduce keeps them equal
        base = 10 + 7 * rank + step
        rows = [{"ids": [base, base + 1, base + 2], "labels": [base + 1, base + 2, IGNORE]}]
        assert train_step(engine, [rows], True, cfg, pad_id=0).stepped
    torch.save({"master": engine.master.master.detach(), "weights": engine.master.weights}, f"{out}/rank{rank}.pt")
    # DDP's reducer goes before the group: destroying the group under a live DDP left a rank
    # blocked at exit once (gloo, a fresh clone).
    del engine, model
    end_rank()


def test_flat_master_replicas_stay_equal_under_ddp(tiny_model, tmp_path):
    """Two DDP workers on different rows: the all-reduced gradients reach FlatMaster's buffer,
    so both end with the same masters and weights (and they moved)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spawn_ranks(_ddp_flat_master_worker, (2, str(tiny_model), port, str(tmp_path)))
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert torch.equal(a["master"], b["master"]) and torch.equal(a["weights"], b["weights"])
    from transformers import AutoModelForCausalLM

    start = torch.cat([p.detach().reshape(-1) for p in AutoModelForCausalLM.from_pretrained(tiny_model).parameters()])
    assert not torch.allclose(a["master"], start)


def test_prepare_decides_everything_in_one_plan(tiny_model, viggo_files, tmp_path):
    """The driver's Plan: resolved config, every epoch's batches, the step counts and the engine
    choice; plain data that pickles (Ray's object store) with each token row stored once."""
    import pickle

    from ft_train.config import CPU_BATCH_TOKENS
    from ft_train.driver import prepare
    from ft_train.plan import Zero

    cfg = TrainConfig(model=str(tiny_model), train=str(viggo_files["train"]), valid=str(viggo_files["valid"]),
                      out_dir=str(tmp_path / "o"), epochs=3, ctx_len=128, workers=2, grad_accum=2, device="cpu",
                      quiet=True)
    plan = prepare(cfg).plan
    assert plan.cfg.batch_tokens == CPU_BATCH_TOKENS and plan.cfg.stop == END_A
    assert plan.cfg.special_tokens == list(SPECIAL_TOKENS) and plan.stop_id is not None
    assert len(plan.train_batches) == 3 and plan.train_batches[0] != plan.train_batches[1]  # each epoch its order
    assert plan.steps_per_epoch == len(shard(plan.train_batches[0], 0, 2, multiple=2)) // 2
    assert plan.total_steps == 3 * plan.steps_per_epoch
    assert plan.zero == Zero(0, "none", bf16=False, deepspeed=False)  # a tiny model on the CPU
    assert plan.resolved()["device"] == "cpu" and plan.resolved()["workers"] == 2
    rows = [r for b in plan.train_batches[0] for seq in b for r in seq]
    assert len(rows) == 300 and len(pickle.dumps(plan)) < 1.5 * len(pickle.dumps(rows))
    assert pickle.loads(pickle.dumps(plan)) == plan


def test_zero_choice_counts_the_grown_model_on_the_meta_device(tiny_model):
    from ft_train.plan import model_shape
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    resize_embeddings(model, model.config.vocab_size + 4)
    config, n_params = model_shape(str(tiny_model), model.config.vocab_size)
    assert n_params == sum(p.numel() for p in model.parameters())
    assert config.vocab_size == model.config.vocab_size


def test_best_epoch_is_chosen_by_one_metric_and_direction():
    from ft_train import worker

    assert worker.is_better({"val_ppl": 3.0}, None)
    assert worker.is_better({"val_ppl": 3.0}, {"val_ppl": 4.0})
    assert not worker.is_better({"val_ppl": 5.0}, {"val_ppl": 4.0})
    acc = ("val_accuracy", "max")  # --select-by accuracy
    assert worker.is_better({"val_accuracy": 0.9, "val_ppl": 9.0}, {"val_accuracy": 0.8, "val_ppl": 1.0}, acc)
    assert not worker.is_better({"val_accuracy": 0.8, "val_ppl": 9.0}, {"val_accuracy": 0.9, "val_ppl": 1.0}, acc)
    # a tie in accuracy goes to the lower perplexity
    assert worker.is_better({"val_accuracy": 0.9, "val_ppl": 1.5}, {"val_accuracy": 0.9, "val_ppl": 2.0}, acc)
    # before accuracy is measured, perplexity ranks epochs; the first measured epoch beats them all
    assert worker.is_better({"val_ppl": 1.5}, {"val_ppl": 2.0}, acc)
    assert worker.is_better({"val_accuracy": 0.0, "val_ppl": 3.0}, {"val_ppl": 1.0}, acc)


def test_accuracy_is_measured_in_the_last_three_epochs():
    from ft_train.worker import accuracy_epochs

    assert list(accuracy_epochs(10)) == [8, 9, 10]
    assert list(accuracy_epochs(4)) == [2, 3, 4]
    assert list(accuracy_epochs(2)) == [1, 2]
    assert list(accuracy_epochs(1)) == [1]

def test_timing_from_marks():
    from ft_train.manifest import timing

    driver = {"start": 100.0, "prepare": 102.0, "ray_init": 104.0, "fit_returned": 120.5, "exit": 121.0}
    worker = {"marks": {"workers_ready": 109.5, "first_step": 110.0, "last_epoch_end": 120.0}, "train_s": 8.0,
              "eval_s": 1.0}
    t = timing(driver, worker)
    assert t["start_to_first_step_s"] == 10.0 and t["last_step_to_exit_s"] == 1.0
    assert t["train_s"] == 8.0 and t["eval_s"] == 1.0
    assert list(t["phases"]) == ["prepare", "ray_init", "workers_ready", "first_step", "last_epoch_end",
                                 "fit_returned", "exit"]
    assert "compile_s" not in t
    compiled = {**worker, "compiled_blocks": 30, "compile_s": {"frames": 3, "dynamo_s": 4.2}}
    assert timing(driver, compiled)["compile_s"] == {"frames": 3, "dynamo_s": 4.2}
    # no worker marks (it died before writing them): the numbers still add up
    t = timing(driver, {})
    assert t["start_to_first_step_s"] == 21.0 and t["last_step_to_exit_s"] == 0.0 and t["train_s"] == 0.0


def test_watcher_calls_on_last_epoch_once(tmp_path):
    from ft_train.console import Console, MetricsWatcher

    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "epoch": 1, "loss": 1.0}, {"epoch": 1, "step": 1, "train_loss": 1.0, "val_ppl": 2.0},
            {"epoch": 2, "step": 2, "train_loss": 1.0, "val_ppl": 2.0}]
    calls = []
    watcher = MetricsWatcher(path, Console(tmp_path, quiet=True), 2, 2, on_last_epoch=lambda: calls.append(1))
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[1]) + "\n")
    watcher.poll()
    assert calls == []
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    watcher.poll()
    watcher.poll()
    assert calls == [1]
    # a run that stops early ends at the row saying so
    stopped = MetricsWatcher(path, Console(tmp_path, quiet=True), 10, 10, on_last_epoch=lambda: calls.append(2))
    path.write_text(json.dumps({**rows[1], "stopped": "no better validation perplexity for 1 epochs"}) + "\n")
    stopped.poll()
    assert calls == [1, 2]


def test_off_a_terminal_the_progress_bar_is_a_line_a_minute(tmp_path, capfd):
    """A log file gets the bar's text as lines: the first once its ETA rests on PLAIN_FIRST_S of
    steps (not step 2's compile on a GPU), then at most one per PLAIN_EVERY_S of the steps' own
    clock; -q gets none."""
    from ft_train.console import PLAIN_EVERY_S, PLAIN_FIRST_S, Console, MetricsWatcher

    assert (PLAIN_FIRST_S, PLAIN_EVERY_S) == (20.0, 60.0)
    path = tmp_path / "metrics.jsonl"
    times = {1: 0.0, 2: 5.0, 10: 30.0, 20: 60.0, 30: 90.0}
    rows = [{"step": k, "epoch": 1, "loss": 2.0, "tokens_per_s": 150.0, "time": t} for k, t in times.items()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with Console(tmp_path, verbose=True) as console:  # verbose: nothing redirected, stderr is pytest's (no tty)
        assert not console.live
        MetricsWatcher(path, console, 920, 10).poll()
    lines = capfd.readouterr().err.splitlines()
    assert lines == ["ft-train: step 10/920, epoch 1/10, loss 2.000, 150 tok/s, ETA 50m 33s",
                     "ft-train: step 30/920, epoch 1/10, loss 2.000, 150 tok/s, ETA 46m 02s"]
    with Console(tmp_path, verbose=True, quiet=True) as console:
        MetricsWatcher(path, console, 920, 10).poll()
    assert capfd.readouterr().err == ""


def test_pad_multiple_rounds_widths_and_cuts_batches_by_them():
    """--pad-multiple: group batches cut by widths rounded up to N, padded to it; the real tokens,
    their labels and the loss positions are the same ones (right padding, causal: pads come last)."""
    from ft_train.data import collate, make_batches

    rows = [{"ids": list(range(1, n + 1)), "labels": [IGNORE] * (n - 2) + [5, 6]} for n in (5, 6, 7, 9, 10, 11, 13)]
    plain = make_batches(rows, "group", None, 32, 64, seed=0)
    rounded = make_batches(rows, "group", None, 32, 64, seed=0, multiple=8)
    assert sorted(len(r[0]["ids"]) for b in rounded for r in b) == [5, 6, 7, 9, 10, 11, 13]  # every row, once
    for b in rounded:  # each batch within 32 tokens at its rounded width: 4 rows of 8, or 2 of 16
        width = -(-max(len(r[0]["ids"]) for r in b) // 8) * 8
        assert len(b) * width <= 32
    assert sorted(len(b) for b in rounded) == sorted(len(b) for b in plain) == [2, 2, 3]
    nines = [{"ids": list(range(1, 10)), "labels": [5] * 9} for _ in range(3)]  # 3 x 9 = 27; 16 x 2 > 27
    assert [len(b) for b in make_batches(nines, "group", None, 27, 64, seed=0)] == [3]
    assert [len(b) for b in make_batches(nines, "group", None, 27, 64, seed=0, multiple=8)] == [1, 1, 1]
    a, b8 = collate([[rows[0]], [rows[3]]], "group", 64, pad_id=0), \
        collate([[rows[0]], [rows[3]]], "group", 64, pad_id=0, multiple=8)
    assert a["input_ids"].shape == (2, 9) and b8["input_ids"].shape == (2, 16)
    assert b8["input_ids"][:, :9].tolist() == a["input_ids"].tolist() and not b8["input_ids"][:, 9:].any()
    assert a["loss_labels"].tolist() == b8["loss_labels"].tolist()
    assert [i % 9 for i in a["loss_index"].tolist()] == [i % 16 for i in b8["loss_index"].tolist()]


@pytest.mark.parametrize("code, fast", [(0, True), (2, False), (1, False)])
def test_only_a_successful_run_skips_pythons_teardown(monkeypatch, code, fast):
    import ft_train.cli as cli

    fast_exits = []

    def exit_now():
        fast_exits.append(code)
        raise SystemExit("exited without teardown")

    monkeypatch.setattr(cli, "run", lambda command, prog: sys.exit(code))
    monkeypatch.setattr(cli, "exit_without_teardown", exit_now)
    with pytest.raises(SystemExit) as done:
        cli.main()
    # a failed run exits as usual, with its code (callers, and tests, may catch it)
    assert (fast_exits, done.value.code) == (([code], "exited without teardown") if fast else ([], code))


def test_the_process_start_is_read_to_a_fraction_of_a_second():
    """The manifest's phases count from the process's start: read from /proc, not from psutil's
    create_time, which rests on a boot time in whole seconds (up to 1 s early)."""
    import subprocess

    code = ("import time; now = time.time()\nfrom ft_train.driver import _process_start\n"
            "print(now - _process_start())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert 0 <= float(out.stdout) < 0.5, out.stdout  # the interpreter's own start, before `now`
