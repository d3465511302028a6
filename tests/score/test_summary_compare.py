"""Summary (Wilson interval, metrics, failures, tokens) and compare (McNemar)."""

import json

import pytest
from ft_score.compare import compare, correctness, format_comparison, mcnemar_exact
from ft_score.summary import Summary, format_summary, wilson_interval


def test_wilson_interval_hand_checked():
    # 8 of 10: the textbook 95% Wilson interval is (0.490, 0.943).
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 0.0)
    low, high = wilson_interval(0, 5)
    assert low == 0.0 and high == pytest.approx(0.4345, abs=1e-4)
    assert wilson_interval(5, 5)[1] == 1.0


def test_mcnemar_exact_hand_checked():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 1024)  # 2 * 0.5**10
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)  # 2 * (1 + 10) / 2**10
    assert mcnemar_exact(2000, 2100) < 1.0  # no overflow on big counts


def test_summary_counts_and_formats():
    s = Summary("viggo", ("exact", "value_f1", "maybe"))
    s.add({"prompt_tokens": 10, "completion_tokens": 4,
           "score": {"correct": True, "exact": True, "value_f1": 1.0, "maybe": None}})
    s.add({"prompt_tokens": 30, "score": {"correct": False, "exact": False, "value_f1": 0.5,
                                          "failure": "malformed", "truncated": True, "maybe": True}})
    d = s.as_dict()
    assert d["n"] == 2 and d["accuracy"] == 0.5 and d["failures"] == {"malformed": 1} and d["truncated"] == 1
    assert d["metrics"] == {"exact": 0.5, "value_f1": 0.75, "maybe": 1.0}
    assert d["mean_prompt_tokens"] == 20.0 and d["mean_completion_tokens"] == 4.0
    text = format_summary(d)
    assert "accuracy" in text and "95% CI" in text and "malformed 1" in text
    json.dumps(d)


def test_empty_summary():
    d = Summary("sql", ("execution",)).as_dict()
    assert d["n"] == 0 and d["accuracy"] is None and d["metrics"] == {"execution": None}
    assert "no records" in format_summary(d)


def test_confusion_table():
    s = Summary("generic", ())
    for label, predicted in [("pos", "pos"), ("pos", "neg"), ("neg", "neg"), ("neg", "neg")]:
        s.add({"score": {"correct": label == predicted, "label": label, "predicted": predicted}})
    d = s.as_dict()
    assert d["confusion"] == {"neg": {"neg": 2}, "pos": {"neg": 1, "pos": 1}}
    assert "confusion" in format_summary(d)


def test_compare_paired():
    a = correctness([{"id": str(i), "score": {"correct": i < 8}} for i in range(10)] + [{"id": "x", "score": {"correct": True}}])
    b = correctness([{"id": str(i), "score": {"correct": i < 3}} for i in range(10)])
    r = compare(a, b, ("tuned", "base"))
    assert (r["shared"], r["only_a"], r["only_b"]) == (10, 1, 0)
    assert (r["wins"], r["losses"], r["ties"], r["both_correct"], r["both_wrong"]) == (5, 0, 5, 3, 2)
    assert r["accuracy_a"] == 0.8 and r["accuracy_b"] == 0.3 and r["difference"] == pytest.approx(0.5)
    assert r["mcnemar_p"] == pytest.approx(2 / 32)
    assert "McNemar" in format_comparison(r)


def test_compare_rejects_unscored_and_repeated():
    from ft_common.errors import InputError

    with pytest.raises(InputError, match="no score"):
        correctness([{"id": "a"}], "run.jsonl")
    with pytest.raises(InputError, match="twice"):
        correctness([{"id": "a", "score": {"correct": True}}] * 2, "run.jsonl")
