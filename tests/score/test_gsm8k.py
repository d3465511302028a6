"""GSM8K checker: strict and flexible extraction, agreement, and the LLM extractor on a local server."""

import json

import pytest
from fake_openai import QuietHandler, chat_completion, read_json, send_json, serve
from ft_score.gsm8k import Gsm8kChecker, flexible_answer, strict_answer
from ft_score.gsm8k_llm import LLMExtractor

# The case study's kind of GSM8K solution (a worked answer ending in `#### N`).
SOLUTION = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
            "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")


def score(completion, answer="72", checker=None, **extra):
    checker = checker or Gsm8kChecker("strict")
    return checker.score({"id": "gsm8k/valid/0", "completion": completion,
                          "meta": {"answer": answer, "input": "How many clips?"}, **extra})


@pytest.mark.parametrize("text, expected", [
    ("#### 72", "72"), ("#### 1,234", "1234"), ("#### $5.50", "5.5"), ("#### -3", "-3"),
    ("a #### 1 then #### 2", "2"), ("the answer is 72", None), ("", None),
])
def test_strict(text, expected):
    assert strict_answer(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("The answer is 72.", "72"), ("She pays $1,234.50 in total.", "1234.5"), ("It drops to -5 degrees", "-5"),
    ("A loss of -$20", "-20"), ("that is $-20", "-20"), ("10-5 = 5", "5"), ("about .5 of it", "0.5"),
    ("3.0 apples", "3"), ("50% of them", "50"), ("no numbers here", None), ("", None),
    ("#### 18\n", "18"), ("x2 and H2O", None), ("−7 (unicode minus)", "-7"),
])
def test_flexible(text, expected):
    assert flexible_answer(text) == expected


def test_case_study_solution_and_agreement():
    s = score(SOLUTION)
    assert s["correct"] and s["extracted"] == {"strict": "72", "flexible": "72"} and s["extractors_agree"]
    s = score("So she sold 72 clips.")
    assert not s["correct"] and s["failure"] == "no_answer" and not s["extractors_agree"]
    assert s["flexible_correct"] and not s["strict_correct"]
    assert score("So she sold 72 clips.", checker=Gsm8kChecker("flexible"))["correct"]
    assert score("#### 71", answer="72")["failure"] == "wrong_answer"
    assert score("#### 72.0", answer="72")["correct"]


def test_gold_from_reference_and_adversarial():
    checker = Gsm8kChecker("flexible")
    rec = {"id": "g/1", "completion": "9" * 10_000, "meta": {"reference": "blah #### 9"}}
    assert checker.score(rec)["correct"] is False
    s = checker.score({"id": "g/2", "completion": "1" * 5000 + " " + "x" * 5000, "finish_reason": "length",
                       "meta": {"answer": "5"}})
    assert s["truncated"] and not s["correct"]
    from ft_common.errors import InputError

    with pytest.raises(InputError, match="g/3"):
        checker.score({"id": "g/3", "completion": "1", "meta": {}})


# ---------------------------------------------------------------- the LLM extractor


class FakeOpenAI(QuietHandler):
    """/v1/chat/completions answering with a report_answer tool call: the last integer in the prompt."""

    requests: list = []

    def do_POST(self):  # noqa: N802
        body = read_json(self)
        FakeOpenAI.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        solution = body["messages"][-1]["content"].split("Solution:\n", 1)[1]
        if "REFUSE" in solution:
            message = {"role": "assistant", "content": "I cannot help with that."}
        else:
            answer = flexible_answer(solution)
            arguments = json.dumps({"answer": int(float(answer)) if answer else "none"})
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "report_answer", "arguments": arguments}}]}
        send_json(self, chat_completion(body["model"], message, "tool_calls"))


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("openai")
    with serve(FakeOpenAI) as base_url:
        yield base_url


def test_llm_extractor_calls_report_answer(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    FakeOpenAI.requests.clear()
    checker = Gsm8kChecker("llm", LLMExtractor("tiny-judge", base_url=server))
    s = score("Natalia sold 72 clips in the end.", checker=checker)
    assert s["correct"] and s["extracted"]["llm"] == "72" and s["extracted"]["strict"] is None
    assert s["llm_correct"] and not s["extractors_agree"]
    request = FakeOpenAI.requests[-1]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    assert request["body"]["tools"][0]["function"]["name"] == "report_answer"
    assert request["body"]["tool_choice"]["function"]["name"] == "report_answer"
    s = score("REFUSE", checker=checker)
    assert s["failure"] == "no_answer" and "did not call report_answer" in s["reason"]
    s = score("no number at all", checker=checker)
    assert s["failure"] == "no_answer" and "report_answer gave" in s["reason"]
    assert score("", checker=checker)["reason"] == "empty completion"


@pytest.mark.parametrize("flag", ["-m", "--model"])
def test_llm_extractor_through_the_cli(server, tmp_path, monkeypatch, flag):
    from click.testing import CliRunner
    from ft_score.cli import cli

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    FakeOpenAI.requests.clear()
    records = [{"id": f"g/{i}", "completion": c, "meta": {"answer": "72"}}
               for i, c in enumerate([SOLUTION, "so 72 in total", "so 70 in total"])]
    summary = tmp_path / "s.json"
    result = CliRunner().invoke(cli, ["gsm8k", "--extract", "llm", "--base-url", server, flag, "judge",
                                      "--summary", str(summary), "-q"],
                                input="".join(json.dumps(r) + "\n" for r in records))
    assert result.exit_code == 0, result.output
    scores = [json.loads(line)["score"] for line in result.stdout.splitlines()]
    assert [s["correct"] for s in scores] == [True, True, False]
    got = json.loads(summary.read_text())
    assert got["metrics"]["llm_correct"] == pytest.approx(2 / 3)
    assert got["metrics"]["extractors_agree"] == pytest.approx(1 / 3)  # strict finds no `####` in two
    assert {r["body"]["model"] for r in FakeOpenAI.requests} == {"judge"}


def test_llm_needs_a_model():
    from click.testing import CliRunner
    from ft_score.cli import cli

    result = CliRunner().invoke(cli, ["gsm8k", "--extract", "llm"], input="", env={"FT_MODEL": "ckpt"})
    assert result.exit_code != 0  # FT_MODEL is ft-infer's model, never the extractor's
    assert "-m/--model" in str(result.exception or result.output)


def test_lm_eval_through_the_cli(tmp_path):
    from click.testing import CliRunner
    from ft_score.cli import cli

    records = [{"id": f"g/{i}", "completion": c, "meta": {"reference": SOLUTION, "answer": "72"}}
               for i, c in enumerate(["#### 72", "#### 72.0", "so 72."])]
    summary = tmp_path / "s.json"
    result = CliRunner().invoke(cli, ["gsm8k", "--extract", "lm-eval-strict", "--summary", str(summary), "-q"],
                                input="".join(json.dumps(r) + "\n" for r in records))
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["score"]["correct"] for line in result.stdout.splitlines()] == [True, False, False]
    metrics = json.loads(summary.read_text())["metrics"]
    assert metrics["strict_correct"] == pytest.approx(2 / 3) and metrics["lm_eval_strict_correct"] == pytest.approx(1 / 3)
    assert metrics["lm_eval_flexible_correct"] == pytest.approx(2 / 3)  # "72." less its dot


# ---------------------------------------------------------------- lm-evaluation-harness's gsm8k
# UPSTREAM: EleutherAI/lm-evaluation-harness (MIT; commit 4e7e0d47f), verbatim but for the class
# scaffolding: lm_eval/filters/extraction.py RegexFilter.apply's filter_set, lm_eval/api/metrics.py
# exact_match_hf_evaluate, and lm_eval/tasks/gsm8k/gsm8k.yaml's filter_list and metric_list.
import re  # noqa: E402
import string  # noqa: E402

import numpy as np  # noqa: E402


def upstream_regex_filter(resps, regex_pattern, group_select=0, fallback="[invalid]"):
    regex = re.compile(regex_pattern)

    def filter_set(inst):
        filtered = []
        for resp in inst:
            if not isinstance(resp, str):
                resp = ""
            match = regex.findall(resp)
            if match:
                match = match[group_select]
                if isinstance(match, tuple):
                    match = [m for m in match if m]
                    if match:
                        match = match[0]
                    else:
                        match = fallback
                match = match.strip()
            else:
                match = fallback
            filtered.append(match)
        return filtered

    return [filter_set(x) for x in resps]


def exact_match_hf_evaluate(predictions, references, regexes_to_ignore=None, ignore_case=False,
                            ignore_punctuation=False, ignore_numbers=False):
    if regexes_to_ignore is not None:
        for s in regexes_to_ignore:
            predictions = np.array([re.sub(s, "", x) for x in predictions])
            references = np.array([re.sub(s, "", x) for x in references])
    else:
        predictions = np.asarray(predictions)
        references = np.asarray(references)

    if ignore_case:
        predictions = np.char.lower(predictions)
        references = np.char.lower(references)

    if ignore_punctuation:
        repl_table = string.punctuation.maketrans("", "", string.punctuation)
        predictions = np.char.translate(predictions, table=repl_table)
        references = np.char.translate(references, table=repl_table)

    if ignore_numbers:
        repl_table = string.digits.maketrans("", "", string.digits)
        predictions = np.char.translate(predictions, table=repl_table)
        references = np.char.translate(references, table=repl_table)

    score_list = predictions == references

    return {"exact_match": np.mean(score_list)}


GSM8K_YAML_FILTERS = {  # gsm8k.yaml, as YAML parses it
    "strict": {"regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
    "flexible": {"group_select": -1, "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
}
GSM8K_YAML_METRIC = {"ignore_case": True, "ignore_punctuation": False,
                     "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}


def upstream_gsm8k(completion, gold_solution, which):
    filtered = upstream_regex_filter([[completion]], **GSM8K_YAML_FILTERS[which])[0][0]  # then take_first
    score = exact_match_hf_evaluate(predictions=[filtered], references=[gold_solution], **GSM8K_YAML_METRIC)
    return filtered, bool(score["exact_match"])


LM_EVAL_COMPLETIONS = [
    SOLUTION, "#### 72", "#### 72.", "#### 72.0", "#### 1,234", "#### $72", "####72", "#### -72",
    "#### 7 and later #### 72", "#### 72\n#### 7", "The answer is 72.", "The answer is 72...",
    "So $72.", "72 clips, 3 days", "It costs $1,000.", "-72", "\u221272", "no number", "", "1.2.3",
    "72%", "...", "She has 72 apples.\n\nQuestion: how many", "  #### 72  ", "7,2", "#### 72.50", "72.5",
]
GOLDS = [SOLUTION, "So she has 1,234.\n#### 1,234", "x\n#### -72", "a #### 7 b\n#### 72", "y\n#### 72.50"]


@pytest.mark.parametrize("gold", GOLDS)
@pytest.mark.parametrize("which", ["strict", "flexible"])
def test_lm_eval_extractors_agree_with_upstream(which, gold):
    checker = Gsm8kChecker(f"lm-eval-{which}")
    for completion in LM_EVAL_COMPLETIONS:
        filtered, correct = upstream_gsm8k(completion, gold, which)
        s = checker.score({"id": "g/0", "completion": completion, "meta": {"reference": gold}})
        assert s["lm_eval"][which] == filtered and s["correct"] is correct, (completion, gold)
        assert s[f"lm_eval_{which}_correct"] is correct
        assert s["answer"] == (None if filtered == "[invalid]" else filtered)
        assert s.get("failure") == (None if correct else "no_answer" if filtered == "[invalid]" else "wrong_answer")


def test_lm_eval_differs_from_ft_where_expected():
    """Where lm-eval's gsm8k and ft's extractors part ways, on one gold of 72."""
    cases = {  # completion: (ft strict, lm-eval strict, ft flexible, lm-eval flexible)
        "#### 72.0": (True, False, True, False),       # lm-eval compares text: "72.0" is not "72"
        "#### $72": (True, False, True, True),          # lm-eval strict wants a digit after "#### "
        "####72": (True, False, True, True),
        "#### 72 then #### 7": (False, True, False, False),  # first `####` in lm-eval, last in ft
        "The answer is 72...": (False, False, True, False),  # "72..." less one dot is "72.."
    }
    for completion, want in cases.items():
        s = score(completion)
        got = (s["strict_correct"], s["lm_eval_strict_correct"], s["flexible_correct"], s["lm_eval_flexible_correct"])
        assert got == want, completion
        for which, expected in (("strict", want[1]), ("flexible", want[3])):
            assert upstream_gsm8k(completion, SOLUTION, which)[1] is expected


def test_lm_eval_gold_falls_back_to_meta_answer():
    s = Gsm8kChecker("lm-eval-strict").score({"id": "g/1", "completion": "#### 1,234", "meta": {"answer": "1234"}})
    assert s["correct"] and s["lm_eval"]["gold"] == "1234"
