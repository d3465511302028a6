"""MathQA and generic checkers."""

import pytest
from ft_score.generic import GenericChecker, normalize_text
from ft_score.mathqa import MathQAChecker


def mq(completion, answer="c"):
    return MathQAChecker().score({"id": "mathqa/valid/0", "completion": completion,
                                  "meta": {"answer": answer, "options": {"a": "1", "c": "3"}}})


def test_mathqa_option_letter():
    assert mq("the rationale ... #### c")["correct"]
    assert mq("so the answer is (C)")["answer"] == "c"
    assert mq("#### b")["failure"] == "wrong_option"
    s = mq("I think it is three")
    assert s["failure"] == "no_answer" and s["answer"] is None
    assert mq("", "c")["failure"] == "no_answer"
    assert mq("#### c", "z")["failure"] == "bad_reference"
    assert mq("#### " * 3000)["correct"] is False


def gen(completion, reference, metric="exact", **meta):
    return GenericChecker(metric).score({"id": "g/0", "completion": completion,
                                         "meta": {"reference": reference, **meta}})


def test_generic_exact_and_normalized():
    assert gen("  Paris ", "Paris")["correct"]
    s = gen("paris.", "Paris")
    assert not s["correct"] and s["normalized"] and s["failure"] == "mismatch"
    assert gen("paris.", "Paris", "normalized")["correct"]
    assert normalize_text("  Hello,   World! ") == "hello world"


def test_generic_json():
    ref = '{"name": "Halo", "rating": "good"}'
    s = gen('{"rating": "bad", "name": "Halo"}', ref, "json")
    assert s["correct"] and s["json_valid"] and s["json_keys"] and not s["exact"]
    assert gen('{"name": "Halo"}', ref, "json")["failure"] == "wrong_keys"
    assert gen('{"name": "Halo",', ref, "json")["failure"] == "invalid_json"
    assert gen("[" * 10_000, ref, "json")["failure"] == "invalid_json"
    assert gen("42", "43", "json")["correct"]  # valid JSON; keys only compared for objects
    assert gen("42", "43")["json_keys"] is None


def test_generic_label_and_confusion():
    assert gen("Positive", "positive", "label")["correct"]
    s = gen("negative", "whatever", "label", label="positive")
    assert not s["correct"] and s["label"] == "positive" and s["predicted"] == "negative"
    assert s["failure"] == "wrong_label"
    assert gen("positive", "positive", label="positive")["label_correct"]


def test_unknown_metric():
    with pytest.raises(ValueError):
        GenericChecker("bleu")
