"""ft-score mathqa on ft-prep's value form (meta.answer_kind "value"): the number after the last
`####`, read as GSM8K's strict extractor reads it; letter records keep their letter scoring."""

import json

import pytest
from ft_score.mathqa import MathQAChecker

OPTIONS = {"a": "24", "b": "120", "c": "625", "d": "720", "e": "1,200"}


def value(completion, answer="625"):
    meta = {"answer": answer, "options": OPTIONS, "letter": "c", "answer_kind": "value"}
    return MathQAChecker().score({"id": "mathqa/valid/0", "completion": completion, "meta": meta})


def letter(completion, answer="c"):
    return MathQAChecker().score({"id": "mathqa/valid/0", "completion": completion,
                                  "meta": {"answer": answer, "options": OPTIONS}})


@pytest.mark.parametrize("completion", [
    "5 ^ 4 = 625 ways .\n#### 625", "#### 625.0", "#### 624\n#### 625", "#### $625", "#### 625<END_A> #### 1",
])
def test_value_right(completion):
    s = value(completion)
    assert s["correct"] and s["answer"] == "625" and s["gold"] == "625" and "failure" not in s


def test_value_normalised_gold_and_answer():
    assert value("#### 1,200", "1200")["correct"]
    assert value("#### 1200", "1200.0")["correct"]
    assert value("#### -25", "-25")["correct"] and not value("#### 25", "-25")["correct"]
    assert value("#### 36.8", "36.8")["correct"] and not value("#### 36", "36.8")["correct"]


def test_value_wrong():
    s = value("so it is 624 .\n#### 624")
    assert not s["correct"] and s["failure"] == "wrong_answer" and s["answer"] == "624"


@pytest.mark.parametrize("completion", [
    "5 ^ 4 = 625 ways . answer : c",   # no `####`: the strict reading finds nothing
    "#### c",                          # the letter form's answer gets no credit here
    "", "#### ", "the answer is 625",
])
def test_value_missing_number(completion):
    s = value(completion)
    assert not s["correct"] and s["failure"] == "no_answer" and s["answer"] is None


@pytest.mark.parametrize("gold", ["c", "abc", "", "nan", "1e400"])
def test_value_bad_reference(gold):
    s = value("#### 625", gold)
    assert not s["correct"] and s["failure"] == "bad_reference"


def test_value_hostile_completions():
    assert not value("#### " + "9" * 5000)["correct"]
    assert not value("#### 625" + "0" * 400)["correct"]
    assert not value("#### " * 3000)["correct"]
    assert value("#### \u0d6c\u0d68\u0d6b x" * 1000 + "#### 625")["correct"]


def test_letter_records_score_as_before():
    assert letter("rationale ...\n#### c")["correct"]
    assert letter("so the answer is (C)")["answer"] == "c"
    assert letter("#### b")["failure"] == "wrong_option"
    s = letter("#### 625")  # a number is not an option letter
    assert not s["correct"] and s["failure"] == "no_answer"
    assert letter("#### c", "625")["failure"] == "bad_reference"


def test_cli_scores_value_records(tmp_path):
    from click.testing import CliRunner
    from ft_score.cli import cli

    meta = {"answer": "625", "options": OPTIONS, "letter": "c", "answer_kind": "value"}
    rows = [{"id": f"mathqa/valid/{i}", "task": "mathqa", "completion": c, "meta": meta}
            for i, c in enumerate(["#### 625", "#### 624", "#### c"])]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = tmp_path / "s.json"
    res = CliRunner().invoke(cli, ["mathqa", str(path), "-q", "-o", str(tmp_path / "out.jsonl"),
                                   "--summary", str(summary)])
    assert res.exit_code == 0, res.output
    s = json.loads(summary.read_text())
    assert s["n"] == 3 and s["correct"] == 1 and s["failures"] == {"wrong_answer": 1, "no_answer": 1}
