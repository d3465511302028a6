"""GSM8K's LLM answer extractor (the checker's `--extract llm`, the case study's): a model reads a
solution and reports its final number.

Any OpenAI-compatible endpoint (`--base-url`, `--model`; the key comes from
OPENAI_API_KEY only). The model is made to call one function, `report_answer`,
whose single argument is an integer, so its reply needs no parsing beyond JSON.
Needs the `llm` extra: pip install 'ft-score[llm]'.
"""

from __future__ import annotations

import json
import os

from ft_common import secrets
from ft_common.errors import FtError, require_module

TOOL = {
    "type": "function",
    "function": {
        "name": "report_answer",
        "description": "Report the final numeric answer the solution arrives at.",
        "parameters": {
            "type": "object",
            "properties": {"answer": {"type": "integer", "description": "the final answer, as an integer"}},
            "required": ["answer"],
        },
    },
}

SYSTEM = ("You read a solution to a grade-school maths problem and report the final answer it "
          "arrives at by calling report_answer. Report the solution's answer, even if it is wrong.")


class LLMExtractor:
    def __init__(self, model: str, base_url: str | None = None, client=None, timeout: float = 60.0):
        if client is None:
            openai = require_module("openai", "ft-score", "llm")
            key = os.environ.get("OPENAI_API_KEY")
            secrets.register(key)  # scrubbed from every error line and traceback
            # Local servers ignore the key, but the client insists on one.
            client = openai.OpenAI(base_url=base_url, api_key=key or "EMPTY", timeout=timeout, max_retries=2)
        self.client, self.model = client, model

    def extract(self, problem: str, completion: str) -> tuple[str | None, str | None]:
        """(answer as an integer string, None), or (None, why not)."""
        answer, reason = self._extract(problem, completion)
        # A reason quotes the endpoint's reply, and goes into the written record.
        return answer, secrets.scrub(reason) if reason else reason

    def _extract(self, problem: str, completion: str) -> tuple[str | None, str | None]:
        if not completion.strip():
            return None, "empty completion"
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Problem:\n{problem}\n\nSolution:\n{completion[:8000]}"}]
        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=messages, tools=[TOOL], temperature=0,
                tool_choice={"type": "function", "function": {"name": "report_answer"}},
            )
        except Exception as exc:  # the openai client's connection and API errors
            raise FtError(secrets.scrub(f"LLM extractor ({self.model}): {type(exc).__name__}: {exc}")) from exc
        calls = response.choices[0].message.tool_calls if response.choices else None
        if not calls:
            return None, "the model did not call report_answer"
        try:
            value = json.loads(calls[0].function.arguments)["answer"]
        except (ValueError, KeyError, TypeError, AttributeError):
            return None, "report_answer arguments are not {answer: integer}"
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return None, f"report_answer gave {value!r}"
        try:
            number = float(str(value).replace(",", ""))
        except ValueError:
            return None, f"report_answer gave {value!r}"
        if number != number or number in (float("inf"), float("-inf")) or number != int(number):
            return None, f"report_answer gave a non-integer {value!r}"
        return str(int(number)), None
