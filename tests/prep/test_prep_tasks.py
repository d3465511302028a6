"""viggo, gsm8k, mathqa and generic on the local data: every format, bad rows, the carve-out."""

import json

import pytest
from ft_common.numbers import final_answer
from ft_common.tasks.mathqa import final_option
from ft_common.tasks.viggo import ATTRIBUTES, FUNCTIONS
from ft_prep import gsm8k, viggo
from ft_prep.common import Row
from ft_prep.sources import hub_rows

ALL_SPLITS = ("train", "valid", "test")


def test_viggo_valid_acceptance(prep, shared_data):
    res = prep("viggo", "--data", shared_data, "--split", "valid")
    assert res.code == 0, res.err
    recs = res.records
    assert len(recs) == 714
    assert all(r["prompt"].startswith("<START_Q>") and r["prompt"].endswith("<START_A>") for r in recs)
    assert all(r["target"].endswith("<END_A>") for r in recs)
    assert recs[0]["id"] == "viggo/valid/0" and len({r["id"] for r in recs}) == 714
    assert recs[0]["stop"] == ["<END_A>"] and recs[0]["special_tokens"][0] == "<START_Q>"
    assert recs[0]["target"] == recs[0]["meta"]["reference"] + "<END_A>"
    assert "714 records" in res.err


def test_viggo_fewshot_and_chat(prep, shared_data):
    few = prep("viggo", "--data", shared_data, "--split", "valid", "--format", "fewshot", "--limit", "3").records
    chat = prep("viggo", "--data", shared_data, "--split", "valid", "--format", "chat", "--limit", "3").records
    assert len(few) == len(chat) == 3
    prompt = few[0]["prompt"]
    assert all(f"'{f}'" in prompt for f in FUNCTIONS) and all(f"'{a}'" in prompt for a in ATTRIBUTES)
    assert prompt.count("Example ") == 9 and "must follow the order listed above" in prompt
    assert prompt.endswith(f"Sentence: {few[0]['meta']['input']}\nOutput:") and few[0]["stop"] == ["\n\n", "\nSentence", "\nExample"]
    assert "target" not in few[0] and "special_tokens" not in few[0]
    assert chat[0]["messages"][-1]["content"].endswith(chat[0]["meta"]["input"])
    assert "prompt" not in chat[0] and chat[0]["format"] == "chat"


def test_viggo_train_and_shuffle(prep, shared_data):
    res = prep("viggo", "--data", shared_data, "--limit", "5", "--shuffle", "--seed", "3")
    again = prep("viggo", "--data", shared_data, "--limit", "5", "--shuffle", "--seed", "3")
    other = prep("viggo", "--data", shared_data, "--limit", "5", "--shuffle", "--seed", "4")
    assert res.out == again.out != other.out
    assert [r["id"] for r in res.records] != [f"viggo/train/{i}" for i in range(5)]


def test_viggo_test_split_is_not_here(prep, shared_data):
    res = prep("viggo", "--data", shared_data, "--split", "test")
    assert res.code == 2 and "no test split here" in res.err


def test_gsm8k_carve_out_is_disjoint_and_stable(prep, shared_data):
    train = prep("gsm8k", "--data", shared_data, "-q").records
    valid = prep("gsm8k", "--data", shared_data, "--split", "valid", "-q").records
    again = prep("gsm8k", "--data", shared_data, "--split", "valid", "--seed", "9", "-q").records
    assert len(train) + len(valid) == 7473
    assert 500 <= len(valid) <= 1000 and valid == again
    assert not {r["meta"]["input"] for r in train} & {r["meta"]["input"] for r in valid}
    assert not {r["id"].split("/")[-1] for r in train} & {r["id"].split("/")[-1] for r in valid}
    assert all(gsm8k.in_valid(r["meta"]["input"]) for r in valid)
    first = train[0]
    assert first["target"].endswith("<END_A>") and final_answer(first["target"]) == first["meta"]["answer"] == "72"


def test_gsm8k_acceptance_formats(prep, shared_data):
    for fmt in ("tokens", "fewshot", "chat"):
        res = prep("gsm8k", "--data", shared_data, "--split", "train", "--limit", "5", "--format", fmt)
        assert res.code == 0, res.err
        assert len(res.records) == 5
    few = prep("gsm8k", "--data", shared_data, "--limit", "1", "--format", "fewshot").records[0]
    assert few["prompt"].count("\nA: ") == 8 and few["prompt"].endswith(few["meta"]["input"] + "\nA:")
    chat = prep("gsm8k", "--data", shared_data, "--limit", "1", "--format", "chat").records[0]
    roles = [m["role"] for m in chat["messages"]]
    assert roles[0] == "system" and roles[1:].count("assistant") == 8 and roles[-1] == "user"


def test_mathqa_valid_test_and_missing_train(prep, shared_data):
    valid = prep("mathqa", "--data", shared_data, "--split", "valid", "--limit", "50").records
    test = prep("mathqa", "--data", shared_data, "--split", "test", "--limit", "5").records
    assert len(valid) == 50 and len(test) == 5
    for r in valid:
        assert r["target"].endswith(f"#### {r['meta']['answer']}<END_A>")
        assert final_option(r["target"]) == r["meta"]["answer"]
        assert sorted(r["meta"]["options"]) == list("abcde") and "\nOptions: a ) " in r["prompt"]
    # The other formats: the same problems, asked of a completion model or a chat endpoint.
    fewshot = prep("mathqa", "--data", shared_data, "--split", "valid", "--limit", "2", "--format", "fewshot").records
    assert [r["meta"] for r in fewshot] == [r["meta"] for r in valid[:2]]
    for r in fewshot:
        assert r["format"] == "fewshot" and "target" not in r and "<START_Q>" not in r["prompt"]
        assert r["prompt"].endswith(f"Q: {r['meta']['input']}\nA:") and r["stop"] != ["<END_A>"]
    chat = prep("mathqa", "--data", shared_data, "--split", "valid", "--limit", "2", "--format", "chat").records
    assert [r["meta"] for r in chat] == [r["meta"] for r in valid[:2]]
    for r in chat:
        assert r["format"] == "chat" and "prompt" not in r and r["messages"][0]["role"] == "system"
        assert r["messages"][-1] == {"role": "user", "content": r["meta"]["input"]}
    res = prep("mathqa", "--data", shared_data, "--split", "train")
    assert res.code == 2 and "train.json" in res.err and "hub" in res.err


def test_bad_rows_name_file_and_row(prep, tmp_path):
    csv = tmp_path / "viggo.csv"
    csv.write_text('mr,ref\n"inform(name[A])","A is a game."\n"inform(name[B])",\n')
    res = prep("viggo", "--data", csv)
    assert res.code == 2 and f"{csv}:3" in res.err and "'ref'" in res.err
    skipped = prep("viggo", "--data", csv, "--skip-bad")
    assert skipped.code == 0 and len(skipped.records) == 1 and "bad=1" in skipped.err
    missing = tmp_path / "cols.csv"
    missing.write_text("mr,sentence\nx,y\n")
    res = prep("viggo", "--data", missing)
    assert res.code == 2 and "missing column" in res.err

    jl = tmp_path / "train.jsonl"
    jl.write_text(json.dumps({"question": "q?", "answer": "no final number"}) + "\n{broken\n")
    res = prep("gsm8k", "--data", jl, "--split", "test")
    assert res.code == 2 and f"{jl}:1" in res.err and "####" in res.err
    res = prep("gsm8k", "--data", jl, "--split", "test", "--skip-bad")
    assert res.code == 2 and f"{jl}:2" in res.err  # malformed JSON is never skipped

    mq = tmp_path / "dev.json"
    mq.write_text(json.dumps([{"Problem": "p", "Rationale": "r", "options": "a ) 1 , b ) 2", "correct": "a"}]))
    res = prep("mathqa", "--data", mq, "--split", "valid")
    assert res.code == 2 and "row 0" in res.err and "options" in res.err


def test_hub_branch_maps_columns_with_a_fake_dataset():
    calls = []

    def fake_load(hub_id, config=None, split=None):
        calls.append((hub_id, config, split))
        return [{"gem_id": "viggo-val-0", "meaning_representation": "request(specifier[fun])",
                 "target": "Any fun games?", "references": ["Any fun games?"]}]

    rows = hub_rows("viggo", "valid", load=fake_load)
    recs = list(viggo.records(rows, "valid"))
    assert calls == [("GEM/viggo", None, "validation")]
    assert recs[0]["prompt"] == "<START_Q>Any fun games?<END_Q><START_A>"
    assert recs[0]["meta"]["reference"] == "request(specifier[fun])"

    rows = hub_rows("gsm8k", "test", load=lambda *a, **k: calls.append((a, k)) or [{"question": "1+1?", "answer": "2\n#### 2"}])
    assert list(gsm8k.records(rows, "test"))[0]["meta"]["answer"] == "2"
    assert calls[-1] == (("openai/gsm8k", "main"), {"split": "test"})
    with pytest.raises(Exception, match="no valid split on the hub"):
        list(hub_rows("gsm8k", "valid", load=fake_load))


def test_gsm8k_carve_applies_to_hub_rows():
    rows = [Row(i, {"question": f"question {i}", "answer": f"#### {i}"}, f"hub row {i}") for i in range(400)]
    valid = list(gsm8k.carve(rows, "valid"))
    train = list(gsm8k.carve(rows, "train"))
    assert len(valid) + len(train) == 400 and 15 < len(valid) < 70


def test_generic_layouts_and_pass_through(prep):
    lines = "\n".join(json.dumps(r) for r in [
        {"input": "hi", "output": "there", "label": 1, "zz": [1]},
        {"id": "mine/7", "prompt": "P:", "target": "T", "meta": {"label": "x"}},
    ])
    recs = prep("generic", stdin=lines).records
    assert recs[0]["prompt"] == "<START_Q>hi<END_Q><START_A>" and recs[0]["target"] == "there<END_A>"
    assert recs[0]["zz"] == [1] and recs[0]["label"] == 1 and recs[0]["id"] == "generic/train/0"
    assert recs[0]["meta"] == {"input": "hi", "reference": "there"} and "input" not in recs[0]
    assert recs[1]["id"] == "mine/7" and recs[1]["prompt"] == "P:" and recs[1]["target"] == "T<END_A>"
    assert recs[1]["meta"]["label"] == "x"
    custom = prep("generic", "--special-tokens", "[Q],[/Q],[A],[/A]", stdin=lines).records[0]
    assert custom["prompt"] == "[Q]hi[/Q][A]" and custom["stop"] == ["[/A]"] and custom["target"] == "there[/A]"
    chat = prep("generic", "--format", "chat", stdin=lines).records[0]
    assert chat["messages"] == [{"role": "user", "content": "hi"}]
    bad = prep("generic", stdin='{"foo": 1}\n')
    assert bad.code == 2 and "record 1" in bad.err
    assert prep("generic", "--special-tokens", "a,b", stdin=lines).code == 2


def test_every_help_has_a_pipe_example(prep):
    for args in ([], ["viggo"], ["gsm8k"], ["mathqa"], ["sql"], ["generic"]):
        res = prep(*args, "--help")
        assert res.code == 0 and " | " in res.out, args
