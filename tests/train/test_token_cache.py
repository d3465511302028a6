"""The tokenised-data cache (ft_train.token_cache): a repeat run skips the tokenizer and gets the same
rows; any changed input misses; an entry that does not read back well formed, or a write cut
short, is never used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ft_train import token_cache
from ft_train.config import TrainConfig
from ft_train.driver import prepare
from train_support import ft_train, viggo_records, write_jsonl


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tokens"


def _plan(model, train, valid, out, marks=None, **kw):
    cfg = TrainConfig(model=str(model), train=str(train), valid=str(valid) if valid else None, out_dir=str(out),
                      **{"epochs": 1, "ctx_len": 128, "device": "cpu", "quiet": True, **kw})
    return prepare(cfg, marks).plan


def _rows(plan) -> list:
    return sorted((tuple(r["ids"]), tuple(r["labels"])) for b in plan.train_batches[0] for seq in b for r in seq)


def _no_tokenizer(monkeypatch):
    import transformers

    def refuse(*a, **k):
        raise AssertionError("the tokenizer was loaded on a cache hit")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)


def test_a_repeat_run_skips_the_tokenizer_and_gets_the_same_plan(tmp_path, cache, tiny_model, viggo_files, monkeypatch):
    first_marks, again_marks = {}, {}
    first = _plan(tiny_model, viggo_files["train"], viggo_files["valid"], tmp_path / "a", first_marks)
    assert len(list(cache.iterdir())) == 1
    _no_tokenizer(monkeypatch)
    again = _plan(tiny_model, viggo_files["train"], viggo_files["valid"], tmp_path / "b", again_marks)
    # the manifest's timing says which run's tokens came from the cache
    assert "token_cache_hit" not in first_marks and "token_cache_hit" in again_marks
    assert _rows(again) == _rows(first) and again.valid_batches == first.valid_batches
    assert (again.stop_id, again.data, again.recipe) == (first.stop_id, first.data, first.recipe)
    saved = sorted(p.name for p in Path(first.tokenizer_dir).iterdir())
    assert sorted(p.name for p in Path(again.tokenizer_dir).iterdir()) == saved and "tokenizer.json" in saved
    for name in saved:
        assert (Path(again.tokenizer_dir) / name).read_bytes() == (Path(first.tokenizer_dir) / name).read_bytes()


def test_any_changed_input_misses(tmp_path, cache, tiny_model, viggo_files):
    _plan(tiny_model, viggo_files["train"], viggo_files["valid"], tmp_path / "a")
    edited = viggo_records("train", 300)
    edited[7]["target"] = edited[7]["target"].replace("(", "( ", 1)
    _plan(tiny_model, write_jsonl(tmp_path / "t.jsonl", edited), viggo_files["valid"], tmp_path / "b")
    _plan(tiny_model, viggo_files["train"], viggo_files["valid"], tmp_path / "c", ctx_len=64)
    _plan(tiny_model, viggo_files["train"], None, tmp_path / "d")  # validation held out of the training file
    _plan(tiny_model, viggo_files["train"], None, tmp_path / "e", seed=1)
    assert len(list(cache.iterdir())) == 5


@pytest.mark.parametrize("damage", ["not json", "id", "label", "lengths", "no tokenizer", "row dropped", "too long",
                                    "infinite vocabulary", "stop id", "tokenizer edited", "nested", "bool id",
                                    "float label"])
def test_an_entry_that_does_not_read_back_is_a_miss_and_is_rewritten(tmp_path, cache, tiny_model, viggo_files, damage):
    want = _rows(_plan(tiny_model, viggo_files["train"], viggo_files["valid"], tmp_path / "a"))
    (entry,) = cache.iterdir()
    rows_file = entry / "rows.json"
    data = json.loads(rows_file.read_text())
    if damage == "not json":
        rows_file.write_text("{")
    elif damage == "id":
        data["train_rows"][0][0][0] = data["vocab_size"]  # one past the vocabulary
    elif damage == "label":
        data["train_rows"][0][1][0] = -5
    elif damage == "bool id":
        data["train_rows"][0][0][0] = True  # == 1, but not an int
    elif damage == "float label":
        data["train_rows"][0][1][-2] = 1.0
    elif damage == "lengths":
        data["train_rows"][0][1].pop()
    elif damage == "row dropped":
        data["train_rows"].pop()
    elif damage == "too long":
        data["train_rows"][0] = [data["train_rows"][0][0] * 200, data["train_rows"][0][1] * 200]
    elif damage == "stop id":
        data["stop_id"] = -7
    elif damage == "no tokenizer":
        shutil.rmtree(entry / "tokenizer")
    elif damage == "tokenizer edited":
        (entry / "tokenizer" / "tokenizer.json").write_text("{}")
    if damage in ("id", "label", "lengths", "row dropped", "too long", "stop id", "bool id", "float label"):
        rows_file.write_text(json.dumps(data))
    elif damage == "infinite vocabulary":
        rows_file.write_text(rows_file.read_text().replace(f'"vocab_size":{data["vocab_size"]}', '"vocab_size":Infinity'))
    elif damage == "nested":
        rows_file.write_text("[" * 100_000 + "]" * 100_000)
    assert token_cache.load(entry.name, tmp_path / "tok", 300, 60, 128) is None
    again = _plan(tiny_model, viggo_files["train"], viggo_files["valid"], tmp_path / "b")
    assert _rows(again) == want
    assert token_cache.load(entry.name, tmp_path / "tok2", 300, 60, 128) is not None  # written anew, whole


def test_a_write_cut_short_leaves_no_entry(tmp_path, cache, monkeypatch):
    got = token_cache.Tokenised([{"ids": [1, 2], "labels": [2, -100]}], 0, [], 0, vocab_size=10, stop_id=None)
    tok = tmp_path / "tokdir"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}")

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", fail)
    token_cache.save("k" * 64, got, tok)
    monkeypatch.undo()
    assert not cache.exists() or list(cache.iterdir()) == []


def test_only_the_most_recently_used_entries_are_kept(tmp_path, cache, monkeypatch):
    import os

    monkeypatch.setattr(token_cache, "KEEP", 2)
    got = token_cache.Tokenised([{"ids": [1, 2], "labels": [2, -100]}], 0, [], 0, vocab_size=10, stop_id=None)
    tok = tmp_path / "tokdir"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}")
    for i, name in enumerate(("a" * 64, "b" * 64, "c" * 64)):
        token_cache.save(name, got, tok)
        os.utime(cache / name, (1000 + i, 1000 + i))
    assert token_cache.load("a" * 64, tmp_path / "t", 1, 0, 8) is None  # the oldest went when the third came
    assert token_cache.load("b" * 64, tmp_path / "t", 1, 0, 8) is not None  # now the most recently used
    stale, fresh = cache / ".dead-run.x", cache / ".writing-now.y"  # temporary folders: a killed run's, a live one's
    stale.mkdir()
    fresh.mkdir()
    os.utime(stale, (1000, 1000))
    token_cache.save("d" * 64, got, tok)
    assert sorted(p.name for p in cache.iterdir()) == [fresh.name, "b" * 64, "d" * 64]


def test_a_cache_hit_keeps_the_terminal_to_ft_trains_lines(tmp_path, tiny_model, viggo_files):
    """On a hit the driver loads no tokenizer; what else imports transformers must stay as quiet."""
    import os

    env = {**os.environ, "FT_CACHE": str(tmp_path / "cache")}
    args = ["-m", tiny_model, "--train", viggo_files["train"], "--valid", viggo_files["valid"], "--device", "cpu",
            "--dry-run"]
    runs = [ft_train([*args, "-o", tmp_path / name], tmp_path, env=env) for name in ("a", "b")]
    assert [r.returncode for r in runs] == [0, 0], runs[1].stderr
    assert len(list((tmp_path / "cache" / "tokens").iterdir())) == 1
    assert runs[1].stderr == runs[0].stderr and runs[1].stdout == runs[0].stdout
    assert all(line.startswith("ft-train: ") for line in runs[1].stderr.splitlines()), runs[1].stderr
