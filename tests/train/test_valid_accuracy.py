"""ft_train.valid_accuracy: greedy completions equal ft-infer's, the checker's verdicts
count, ft-score is optional, the sample is fixed, ranks agree (gloo, 2 processes)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
from ft_common.tasks import END_A
from ft_prep import viggo
from ft_prep.sources import local_file, read_file
from ft_train import valid_accuracy as va
from tiny_model import build_stop_model
from train_support import end_rank, spawn_ranks


def prep_records(shared_data, n: int) -> list[dict]:
    """ViGGO valid records in the tokens format, made by ft-prep's library."""
    rows = read_file(local_file(shared_data, "viggo", "valid"))
    return [r for _, r in zip(range(n), viggo.records(rows, "valid"), strict=False)]


@pytest.fixture(scope="module")
def stop_model(tiny_model, shared_data, tmp_path_factory) -> Path:
    """The tiny Llama with varied random weights and the task's tokens added (as ft-train adds
    them), <END_A> made to win where a common token would: some completions stop part-way,
    others run to the token limit, and a padding or position bug changes the text."""
    from ft_train.tokens import add_tokens, resize_embeddings
    from tokenizers.processors import TemplateProcessing

    def add(model, tokenizer):
        add_tokens(tokenizer, list(prep_records(shared_data, 1)[0]["special_tokens"]))
        # Prompts start with <s>, as most models' do: a prompt encoded without it reads differently.
        tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", tokenizer.bos_token_id)])
        resize_embeddings(model, len(tokenizer))

    texts = [r["meta"]["input"] for r in prep_records(shared_data, 8)]
    return build_stop_model(tiny_model, tmp_path_factory.mktemp("va-stop-llama"), texts, add, vary=True)


def load(path: Path, dtype=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, **({"dtype": dtype} if dtype else {}))
    return model, tokenizer


# ---------------------------------------------------------------- (a) the same text as ft-infer


def test_completions_equal_ft_infer_hf_engine(stop_model, shared_data):
    from ft_infer.engines.hf import HFEngine
    from ft_infer.types import GenerationOptions, Request

    records = prep_records(shared_data, 12)
    engine = HFEngine(str(stop_model), GenerationOptions(max_new_tokens=24), device="cpu", dtype="float32",
                      batch_size=5, quiet=True)
    want = engine.generate([Request(id=r["id"], prompt=r["prompt"], stop=tuple(r["stop"])) for r in records])
    model, tokenizer = load(stop_model)
    model.train()  # as the trainer leaves it
    stop_id = tokenizer.convert_tokens_to_ids(END_A)
    got = va.complete(model, tokenizer, [r["prompt"] for r in records], stop_id, max_new_tokens=24, batch_size=3)
    assert got == [(w.completion, w.finish_reason) for w in want]
    reasons = Counter(r for _, r in got)
    assert reasons["stop"] and reasons["length"]  # both kinds of ending are compared
    assert tokenizer(records[0]["prompt"])["input_ids"][0] == tokenizer.bos_token_id
    assert all(END_A not in text for text, _ in got)
    assert va.greedy_complete(model, tokenizer, [r["prompt"] for r in records[:4]], stop_id, 24, 4) == \
        [text for text, _ in got[:4]]
    assert model.training  # its mode is given back


def test_bf16_weights_generate_and_keep_the_mode(stop_model, shared_data):
    import torch

    records = prep_records(shared_data, 4)
    model, tokenizer = load(stop_model, dtype=torch.bfloat16)
    model.eval()
    texts = va.greedy_complete(model, tokenizer, [r["prompt"] for r in records],
                               tokenizer.convert_tokens_to_ids(END_A), 8, 2)
    assert len(texts) == 4 and all(isinstance(t, str) for t in texts)
    assert not model.training


# ---------------------------------------------------------------- (b) the checker decides


def test_scores_the_checkers_verdict(monkeypatch, shared_data):
    records = prep_records(shared_data, 20)
    checker = va.checker_for(records)
    kw = {"checker": checker, "max_new_tokens": 8}
    prompts = {r["prompt"]: r["meta"]["reference"] for r in records}

    def answer(wrong_every: int):
        def fake(model, tokenizer, texts, *args):  # stands in for the model: the reference, or a bad MR
            return [(prompts[t] if i % wrong_every else "inform(name[x])", "stop") for i, t in enumerate(texts)]
        return fake

    monkeypatch.setattr(va, "complete", answer(wrong_every=10**9))  # only the first one wrong
    first_wrong = va.valid_accuracy(None, None, records, 0, **kw)
    assert first_wrong["val_n"] == 20 and first_wrong["val_accuracy"] == 19 / 20
    monkeypatch.setattr(va, "complete", answer(wrong_every=1))  # all wrong
    assert va.valid_accuracy(None, None, records, 0, **kw)["val_accuracy"] == 0.0
    monkeypatch.setattr(va, "complete", lambda m, t, texts, *a: [(prompts[x], "stop") for x in texts])
    right = va.valid_accuracy(None, None, records, 0, **kw)
    assert right["val_accuracy"] == 1.0 and right["val_errors"] == 0 and right["val_gen_s"] >= 0
    # ranks' shares: 20 records over 3 ranks is 7 + 7 + 6, one filler not counted
    assert sum(va.valid_accuracy(None, None, records, 0, rank=k, world=3, **kw)["val_n"] for k in range(3)) == 20


def test_valid_accuracy_on_a_real_model(stop_model, shared_data):
    records = prep_records(shared_data, 6)
    model, tokenizer = load(stop_model)
    out = va.valid_accuracy(model, tokenizer, records, tokenizer.convert_tokens_to_ids(END_A),
                            checker=va.checker_for(records), device="cpu", batch_size=4)
    assert out["val_n"] == 6 and out["val_accuracy"] == 0.0  # random weights write no MR


# ---------------------------------------------------------------- (c) ft-score is optional


def test_checker_for_the_records_task(shared_data):
    from ft_score.gsm8k import Gsm8kChecker
    from ft_score.sql import SqlChecker
    from ft_score.viggo import ViggoChecker

    records = prep_records(shared_data, 3)
    checker = va.checker_for(records)
    assert isinstance(checker, ViggoChecker) and checker.extract == "strict"
    gsm = va.checker_for([{"task": "gsm8k"}])
    assert isinstance(gsm, Gsm8kChecker) and gsm.extract == "strict" and gsm.llm is None  # no LLM calls
    sql = va.checker_for([{"task": "sql"}])
    assert isinstance(sql, SqlChecker) and sql.engine == "sqlite"  # ft-score's jailed SQLite worker
    sql.close()
    assert va.checker_for([*records, {"task": "gsm8k"}]) is None  # two tasks
    assert va.checker_for([{"prompt": "x"}]) is None  # no task
    assert va.checker_for([{"task": "no-such-task"}]) is None


def test_checker_for_without_ft_score(monkeypatch, shared_data):
    records = prep_records(shared_data, 3)
    # A None entry makes `import` raise ImportError, as when ft-score is not installed.
    for name in [m for m in sys.modules if m == "ft_score" or m.startswith("ft_score.")] + ["ft_score"]:
        monkeypatch.setitem(sys.modules, name, None)
    assert va.checker_for(records) is None


# ---------------------------------------------------------------- (d) the sample


def test_sample_is_deterministic_and_bounded(shared_data):
    records = prep_records(shared_data, 100)
    a = va.sample(records, 30, seed=7)
    assert a == va.sample(records, 30, seed=7) and len(a) == 30
    assert a != va.sample(records, 30, seed=8)
    assert a != records[:30]  # a sample, not the head
    ids = [int(r["id"].rsplit("/", 1)[1]) for r in a]
    assert ids == sorted(ids)  # in file order
    assert va.sample(records, 500, seed=7) == records  # all, when fewer
    assert len(va.sample(records, va.DEFAULT_N)) == 100


def test_default_max_new_tokens(stop_model, shared_data):
    _, tokenizer = load(stop_model)
    records = prep_records(shared_data, 10)
    longest = max(len(tokenizer(r["target"], add_special_tokens=False)["input_ids"]) for r in records)
    assert va.default_max_new_tokens(tokenizer, records) == longest + 16
    assert va.default_max_new_tokens(tokenizer, [{"target": "x " * 2000}]) == 512


# ---------------------------------------------------------------- ranks (gloo, synced like ZeRO-3)


def _rank_main(rank: int, world: int, rendezvous: str, model_dir: str, records: list, out_dir: str) -> None:
    import json

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        model, tokenizer = load(Path(model_dir))
        if rank == 1:  # a rank whose sequences stop at once still steps with the other (synced_gpus)
            model.generation_config.eos_token_id = list(range(len(tokenizer)))
        forwards = []
        model.register_forward_hook(lambda *_: forwards.append(1))
        result = va.valid_accuracy(model, tokenizer, records, tokenizer.convert_tokens_to_ids(END_A),
                                   checker=_EmptyChecker(), batch_size=2, rank=rank, world=world,
                                   max_new_tokens=12, synced_gpus=True)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({**result, "forwards": len(forwards)}))
    except BaseException:
        dist.destroy_process_group()
        raise
    end_rank()


class _EmptyChecker:
    """Correct when the completion is empty: all of rank 1's (every token is its eos)."""

    def score(self, record: dict) -> dict:
        return {"correct": record["completion"] == "" and record["finish_reason"] == "stop"}


def test_ranks_sum_their_counts_and_step_together(stop_model, shared_data, tmp_path):
    import json

    records = prep_records(shared_data, 7)  # 4 + 3: rank 1 runs one filler, not counted
    # A file rendezvous: a port picked here could be taken before the ranks bind it (a flaky failure).
    rendezvous = str(tmp_path / "rendezvous")
    spawn_ranks(_rank_main, (2, rendezvous, str(stop_model), records, str(tmp_path)))
    results = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in range(2)]
    model, tokenizer = load(stop_model)
    rank0 = va.complete(model, tokenizer, [r["prompt"] for r in records[0::2]],
                        tokenizer.convert_tokens_to_ids(END_A), 12, 2)
    empty0 = sum(text == "" for text, _ in rank0)
    assert results[0]["val_n"] == results[1]["val_n"] == 7
    assert results[0]["val_accuracy"] == results[1]["val_accuracy"] == (3 + empty0) / 7  # summed over ranks
    assert results[0]["forwards"] == results[1]["forwards"] > 4  # ZeRO-3's rule: as many forwards on each
