"""GSM8K checker: strict and flexible extraction, agreement, and the LLM extractor on a local server."""

import json

import pytest
from fake_openai import QuietHandler, chat_completion, read_json, send_json, serve
from ft_score.gsm8k import Gsm8kChecker, flexible_answer, strict_answer
from ft_score.llm import LLMExtractor

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


def test_llm_extractor_through_the_cli(server, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from ft_score.cli import cli

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    records = [{"id": f"g/{i}", "completion": c, "meta": {"answer": "72"}}
               for i, c in enumerate([SOLUTION, "so 72 in total", "so 70 in total"])]
    summary = tmp_path / "s.json"
    result = CliRunner().invoke(cli, ["gsm8k", "--extract", "llm", "--base-url", server, "--model", "judge",
                                      "--summary", str(summary), "-q"],
                                input="".join(json.dumps(r) + "\n" for r in records))
    assert result.exit_code == 0, result.output
    scores = [json.loads(line)["score"] for line in result.stdout.splitlines()]
    assert [s["correct"] for s in scores] == [True, True, False]
    got = json.loads(summary.read_text())
    assert got["metrics"]["llm_correct"] == pytest.approx(2 / 3)
    assert got["metrics"]["extractors_agree"] == pytest.approx(1 / 3)  # strict finds no `####` in two


def test_llm_needs_a_model():
    from click.testing import CliRunner
    from ft_score.cli import cli

    result = CliRunner().invoke(cli, ["gsm8k", "--extract", "llm"], input="")
    assert result.exit_code != 0
