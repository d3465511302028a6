"""ViGGO checker: MR parsing, the case study's three rules, F1, adversarial completions."""

import pytest
from ft_score.viggo import MRError, ViggoChecker, parse_mr, same_order, value_f1

REF = ("inform(name[Dirt: Showdown], release_year[2012], esrb[E 10+ (for Everyone 10 and Older)], "
       "genres[driving/racing, sport], platforms[PlayStation, Xbox, PC], available_on_steam[no], "
       "has_linux_release[no], has_mac_release[no])")


def score(completion, reference=REF, **extra):
    return ViggoChecker().score({"id": "viggo/valid/1", "completion": completion,
                                 "meta": {"reference": reference}, **extra})


def test_parse_values_with_commas_parentheses_and_empty_brackets():
    mr = parse_mr(REF)
    assert mr.function == "inform"
    assert mr.attributes == ("name", "release_year", "esrb", "genres", "platforms",
                             "available_on_steam", "has_linux_release", "has_mac_release")
    assert dict(mr.slots)["esrb"] == "E 10+ (for Everyone 10 and Older)"
    assert dict(mr.slots)["platforms"] == "PlayStation, Xbox, PC"
    assert parse_mr("request_attribute(has_mac_release[])").slots == (("has_mac_release", ""),)
    assert parse_mr("inform(name[Foo [Remastered]], rating[good])").slots[0] == ("name", "Foo [Remastered]")
    assert parse_mr("  verify_attribute( name [Halo] ,rating[ good ] )  ").slots == (("name", "Halo"), ("rating", "good"))


@pytest.mark.parametrize("text, reason", [
    ("", "no function name"),
    ("Sure! Here is the MR:", "no function name"),
    ("inform(name[Halo], rating[good]", "expected ',' or ')'"),
    ("inform(name[Halo, rating[good])", "unclosed '['"),
    ("inform(name[Halo]] rating[good])", "expected ',' or ')'"),
    ("inform(name[Halo]) and more", "trailing text"),
    ("inform(name Halo)", "expected attribute[value]"),
])
def test_malformed_mrs_raise_with_a_reason(text, reason):
    with pytest.raises(MRError, match=reason.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        parse_mr(text)


def test_exact_copy_is_correct():
    s = score(REF)
    assert s["correct"] and s["exact"] and s["correct_unordered"] and s["value_f1"] == 1.0
    assert "failure" not in s and s["truncated"] is False


def test_case_study_example_request():
    # The case study's example: "What's a fast-paced game with multiplayer ...?"
    ref = "request(has_multiplayer[yes], specifier[fast-paced])"
    assert score("request(has_multiplayer[yes], specifier[fast-paced])", ref)["correct"]
    # Values do not decide correctness (the case study checked function, attributes, order) ...
    s = score("request(has_multiplayer[yes], specifier[slow])", ref)
    assert s["correct"] and not s["exact"] and s["value_f1"] == 0.5
    # ... but the order does.
    s = score("request(specifier[fast-paced], has_multiplayer[yes])", ref)
    assert not s["correct"] and s["correct_unordered"] and s["failure"] == "wrong_order"


def test_wrong_function_and_wrong_attributes():
    s = score(REF.replace("inform(", "give_opinion(", 1))
    assert s["failure"] == "wrong_function" and not s["function"] and s["attribute_set"]
    s = score("inform(name[Dirt: Showdown], release_year[2012])")
    assert s["failure"] == "wrong_attributes" and "esrb" in s["reason"] and s["function"]
    s = score("inform(name[Dirt: Showdown], name[Dirt: Showdown], release_year[2012])",
              "inform(name[Dirt: Showdown], release_year[2012])")
    assert s["failure"] == "wrong_attributes" and "repeated" in s["reason"]
    s = score("fancy(name[X])", "inform(name[X])")
    assert "not a ViGGO function" in s["reason"]


def test_value_f1_counts_list_items():
    a, b = parse_mr("inform(genres[action, shooter])"), parse_mr("inform(genres[shooter, RPG])")
    assert value_f1(a, b) == pytest.approx(0.5)
    assert value_f1(parse_mr("x(a[])"), parse_mr("x(a[])")) == 1.0
    assert same_order(("name", "rating"), ("name", "developer", "rating"))
    assert not same_order(("rating", "name"), ("name", "rating"))


@pytest.mark.parametrize("completion", [
    "", "   ", "(" * 10_000, "inform(" + "name[x], " * 2_000, "inform(name[" + "a" * 10_000,
    "]]]]][[[[", "inform(name[Halo]", "x" * 10_000, REF + ")" * 50,
])
def test_adversarial_completions_score_false_with_a_reason(completion):
    s = score(completion)
    assert s["correct"] is False and s["failure"] in {"malformed", "wrong_attributes"} and s["reason"]


def test_length_limited_completion_is_flagged():
    s = score("inform(name[Dirt: Show", finish_reason="length")
    assert s["truncated"] is True and s["failure"] == "malformed"


def test_stop_token_left_in_completion_is_cut():
    assert score(REF + "<END_A>garbage")["correct"]


def test_missing_completion_or_reference_is_an_input_error():
    from ft_common.errors import InputError

    with pytest.raises(InputError, match="viggo/valid/9.*completion"):
        ViggoChecker().score({"id": "viggo/valid/9", "meta": {"reference": REF}})
    with pytest.raises(InputError, match="viggo/valid/9.*meta.reference"):
        ViggoChecker().score({"id": "viggo/valid/9", "completion": REF, "meta": {}})


def test_every_real_reference_scores_correct_against_itself(shared_data):
    # The order rule compares with the reference's order, so no ViGGO reference fails its own check.
    import csv

    checker = ViggoChecker()
    for split in ("train", "valid"):
        with open(shared_data / "viggo" / f"{split}.csv", newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                s = checker.score({"completion": row["mr"], "meta": {"reference": row["mr"]}})
                assert s["correct"] and s["exact"], (row["mr"], s)


def test_first_extraction_takes_the_first_mr_in_free_text():
    from ft_score.viggo import ViggoChecker, first_mr_text

    text = " Output: give_opinion(name[SpellForce 3], rating[poor]) Output: inform(name[X])"
    assert first_mr_text(text) == "give_opinion(name[SpellForce 3], rating[poor])"
    assert first_mr_text("inform(name[a (b) c], genres[x, y])!") == "inform(name[a (b) c], genres[x, y])"
    assert first_mr_text("nothing here") == "nothing here"
    record = {"id": "v/0", "meta": {"reference": "give_opinion(name[SpellForce 3], rating[poor])"}}
    assert ViggoChecker("first").check(record, text)["correct"] is True
    assert ViggoChecker().check(record, text)["correct"] is False
