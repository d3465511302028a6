"""ft-prep mathqa --answer value: GSM8K-shaped MathQA (no options, `#### <number>`), skipped rows
counted, the letter default untouched, and rows built to break it."""

import json

import pytest
from ft_common.numbers import final_answer
from ft_prep import mathqa
from ft_prep.common import Row, Stats

OPTIONS = "a ) 24 , b ) 120 , c ) 625 , d ) 720 , e ) 1024"
RATIONALE = '"5 choices for each of the 4 questions , so 5 ^ 4 = 625 ways . answer : c ."'
PROBLEM = "in how many ways can the test be completed ?"


def row(options=OPTIONS, correct="c", rationale=RATIONALE, problem=PROBLEM, index=0):
    data = {"Problem": problem, "Rationale": rationale, "options": options, "correct": correct}
    return Row(index, data, f"dev.json row {index}")


def convert(rows, answer="value", fmt="tokens"):
    stats = Stats()
    return list(mathqa.records(rows, "valid", fmt, stats=stats, answer=answer)), stats


@pytest.mark.parametrize("option, value", [
    ("625", "625"), ("rs . 486", "486"), ("$ 2383", "2383"), ("238 sec", "238"), ("- 25", "-25"),
    ("36.8 seconds", "36.8"), ("6 %", "6"), ("1,200", "1200"), ("$ 4,120", "4120"), ("- 1.0", "-1"),
    ("s . 2.82", "2.82"), ("\u2212 7", "-7"), ("$ - 5.4", "-5.4"), ("0.44", "0.44"), ("7.5 % .", "7.5"),
    ("a ) 5", "5"), ("11 a . m", "11"), ("37 \u00b0 c", "37"), ("rs . 175.50", "175.5"),
])
def test_option_value_reads_the_one_number(option, value):
    assert mathqa.option_value(option) == value


@pytest.mark.parametrize("option", [
    "31 / 36", "4 : 5", "4 \u03c0", "16 pi feet", "750 cm 2", "0 and 16", "1 hr 6 min", "3 1 / 3", "10 ^ 20",
    "none", "none of these", "four", "e = 480", "19 a", "w \u2212 112", "c - 13500", "6 o kmph", ". 09",
    "28 % loss", "2 \u221a 3", "25 -", "- - 5", "2,4", "", "3 billion km",
])
def test_option_value_refuses_anything_but_one_plain_number(option):
    assert mathqa.option_value(option) is None


@pytest.mark.parametrize("option", [
    "\u0663\u0664",                      # Arabic-Indic 34: float() would read it; not an ASCII number
    "\uff13\uff14",                      # fullwidth 34
    "1" + "0" * 400,                     # overflows a float
    "99999999999999999999",              # past a float's exact digits (would print as 1e+20)
    "0.12345678901234567890",            # would come back rounded (0.12345678901234568)
    "1e5", "nan", "inf", "0x1f", "\x00 5", "5 \U0001f600", "$ $ - - 5",
])
def test_option_value_hostile_options(option):
    assert mathqa.option_value(option) is None


@pytest.mark.parametrize("rationale, kept", [
    ("5 * 5 = 25 . answer : c .", "5 * 5 = 25 ."),
    ("so 21 hours . the answer is b .", "so 21 hours ."),
    ("total = 480 answer : option a", "total = 480"),
    ("the speed is 3 : 2 . answer : b .", "the speed is 3 : 2 ."),
    ("x = 15 . the correct answer is d .", "x = 15 ."),
    ("hence 49 zeros . e is the correct answer .", "hence 49 zeros ."),
    ("= 540 final answer : e", "= 540"),
    ("therefore , the answer is b .", ""),
    ("= 11 years . answer : a ) 11", "= 11 years ."),
    ("speed = 60 kmph hence answer will be ( d )", "speed = 60 kmph"),
    ("1680 / 84 = rs . 20 d", "1680 / 84 = rs . 20"),      # a bare letter: the correct one only
    ("1680 / 84 = rs . 20 b", "1680 / 84 = rs . 20 b"),    # ... not another
    ("the area is x * a", "the area is x * a"),             # a variable, not after a number
    ("so 5 answers in all .", "so 5 answers in all ."),     # no letter named
])
def test_strip_answer_letter(rationale, kept):
    assert mathqa.strip_answer_letter(rationale, "d") == kept


def test_value_record_shape():
    [record], stats = convert([row()])
    assert not stats
    assert record["prompt"] == f"<START_Q>{PROBLEM}<END_Q><START_A>"  # no Options line
    assert record["target"] == "5 choices for each of the 4 questions , so 5 ^ 4 = 625 ways .\n#### 625<END_A>"
    assert record["meta"]["answer"] == "625" and record["meta"]["letter"] == "c"
    assert record["meta"]["answer_kind"] == "value" and record["meta"]["options"]["c"] == "625"
    assert final_answer(record["target"]) == "625"


def test_rows_without_one_number_are_skipped_and_counted():
    rows = [row(), row("a ) 1 / 2 , b ) 31 / 36 , c ) 4 , d ) 5 , e ) 6", "b", index=1),
            row("a ) 4 : 5 , b ) 2 , c ) 3 , d ) 4 , e ) 5", "a", index=2),
            row("a ) 1 , b ) 2 , c ) 4 \u03c0 , d ) 4 , e ) 5", "c", index=3),
            row("a ) 1 , b ) rs . 486 , c ) 3 , d ) 4 , e ) 5", "b", index=4)]
    records, stats = convert(rows)
    assert [r["id"] for r in records] == ["mathqa/valid/0", "mathqa/valid/4"]
    assert records[1]["meta"]["answer"] == "486"
    assert stats == {mathqa.NO_SINGLE_NUMBER: 3}
    letters, stats = convert(rows, answer="letter")
    assert len(letters) == 5 and not stats  # the letter form skips nothing


def test_letter_default_unchanged():
    [record], _ = convert([row()], answer="letter")
    assert record["prompt"] == f"<START_Q>{PROBLEM}\nOptions: {OPTIONS}<END_Q><START_A>"
    assert record["target"] == ('5 choices for each of the 4 questions , so 5 ^ 4 = 625 ways . answer : c .'
                                '\n#### c<END_A>')
    assert set(record["meta"]) == {"input", "reference", "answer", "options"} and record["meta"]["answer"] == "c"
    assert list(mathqa.records([row()], "valid")) == [record]


def test_value_prompts_ask_for_the_number():
    [few], _ = convert([row()], fmt="fewshot")
    assert "Options:" not in few["prompt"] and "#### 21\n" in few["prompt"] and "#### b" not in few["prompt"]
    [chat], _ = convert([row()], fmt="chat")
    assert "numeric answer" in chat["messages"][0]["content"] and chat["messages"][-1]["content"] == PROBLEM
    [letter_chat], _ = convert([row()], answer="letter", fmt="chat")
    assert "letter" in letter_chat["messages"][0]["content"]


def test_hostile_rows_neither_crash_nor_pass():
    huge = "answer " * 100_000 + ": c"
    rows = [row("a ) \u0663\u0664 , b ) 1e400 , c ) " + "9" * 500 + " , d ) \U0001f600 , e ) NaN", "a"),
            row("a ) \u0663\u0664 , b ) 1e400 , c ) " + "9" * 500 + " , d ) \U0001f600 , e ) NaN", "c", index=1),
            row("a ) 1 , b ) 2 , c ) 3 , d ) 4 , e ) 5", "e", rationale=huge, index=2),
            row("a ) \x00 , b ) , c ) ) ) , d ) 4 , e ) 5", "b", index=3)]
    records, stats = convert(rows)
    assert stats == {mathqa.NO_SINGLE_NUMBER: 3}
    [record] = records
    assert record["meta"]["answer"] == "5" and record["target"].endswith("\n#### 5<END_A>")
    assert len(record["target"]) < len(huge)  # the closing "answer : c" went, and nothing hangs


def test_cli_value_form_and_summary(prep, tmp_path):
    dev = tmp_path / "dev.json"
    rows = [row(), row("a ) 31 / 36 , b ) 2 , c ) 3 , d ) 4 , e ) 5", "a", index=1)]
    dev.write_text(json.dumps([r.data for r in rows]))
    res = prep("mathqa", "--data", dev, "--split", "valid", "--answer", "value")
    assert res.code == 0, res.err
    assert [r["meta"]["answer"] for r in res.records] == ["625"]
    assert "1 records" in res.err and "skipped_no_single_number=1" in res.err
    letters = prep("mathqa", "--data", dev, "--split", "valid")
    assert [r["meta"]["answer"] for r in letters.records] == ["c", "a"] and "skipped" not in letters.err
    assert prep("mathqa", "--data", dev, "--split", "valid", "--answer", "number").code == 2
    helped = prep("mathqa", "--help")
    assert helped.code == 0 and "--answer [letter|value]" in helped.out


def test_local_value_form(prep, shared_data):
    res = prep("mathqa", "--data", shared_data, "--split", "valid", "--answer", "value", "--limit", "200")
    assert res.code == 0, res.err
    assert len(res.records) == 200
    for r in res.records:
        meta = r["meta"]
        assert "Options:" not in r["prompt"] and meta["answer_kind"] == "value"
        assert r["target"].endswith(f"\n#### {meta['answer']}<END_A>")
        assert final_answer(r["target"]) == meta["answer"]
        assert mathqa.option_value(meta["options"][meta["letter"]]) == meta["answer"]
        assert not r["target"].rsplit("\n####", 1)[0].rstrip(" .").endswith(f"answer : {meta['letter']}")
