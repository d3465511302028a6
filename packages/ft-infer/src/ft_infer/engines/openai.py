"""The OpenAI engine: any OpenAI-compatible endpoint (OpenAI, a vLLM server, others).

Chat records (`messages`) go to the chat completions endpoint, plain prompts to
the completions endpoint. Requests run `concurrency` at a time on threads;
results come back in input order. A 429, a 5xx, a timeout or a dropped
connection is retried with exponential backoff (honouring Retry-After), up to
`max_retries` times. The API key is read from OPENAI_API_KEY only, and never
appears in a record, a log line or an error message.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

from ft_common import secrets
from ft_common.errors import FtError, UsageError, require_module
from ft_common.progress import log
from ft_common.tasks import cut_at_stop

from ft_infer.types import GenerationOptions, Request, Result

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
MAX_STOPS = 4  # the OpenAI API takes at most four stop sequences


class OpenAIEngine:
    name = "openai"

    def __init__(self, model: str, options: GenerationOptions | None = None, *,
                 base_url: str | None = None, concurrency: int = 8, max_retries: int = 5,
                 timeout: float = 60.0, backoff: float = 1.0, max_backoff: float = 30.0,
                 quiet: bool = False):
        if not model:
            raise UsageError("--engine openai needs -m/--model: the endpoint's model name")
        self.model_name = model
        self.options = options or GenerationOptions()
        self.base_url = base_url
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff, self.max_backoff = backoff, max_backoff
        self.quiet = quiet
        self.client = None
        self._pool = None

    def load(self) -> None:
        if self.client is not None:
            return
        openai = require_module("openai", "ft-infer", "openai")
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            if not self.base_url:
                raise UsageError("--engine openai needs OPENAI_API_KEY in the environment (or --base-url "
                                 "for a local server that takes no key)")
            key = "none"  # local servers (vllm serve) take any key
        secrets.register(key)  # ft_common.secrets scrubs it from every error message
        self.openai = openai
        # Retries are ours (logged, with Retry-After), so the client's own are off.
        self.client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout, max_retries=0)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="ft-infer-openai")
        log(f"ft-infer: openai engine: {self.model_name} at {self.base_url or 'api.openai.com'}, "
            f"{self.concurrency} at a time", self.quiet)

    def generate(self, requests: list[Request]) -> list[Result]:
        if not requests:
            return []
        self.load()
        return list(self._pool.map(self.one, requests))  # map keeps input order

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- one request -----------------------------------------------------------------------
    def one(self, request: Request) -> Result:
        opts = self.options
        common = {"model": self.model_name, "temperature": opts.temperature, "max_tokens": opts.max_new_tokens}
        if opts.top_p < 1.0:
            common["top_p"] = opts.top_p
        if opts.seed is not None:
            common["seed"] = opts.seed
        if request.stop:
            common["stop"] = list(request.stop[:MAX_STOPS])
        if request.is_chat:
            response = self._call(request, lambda: self.client.chat.completions.create(
                messages=request.messages, **common))
            choice = response.choices[0]
            text = choice.message.content or ""
        else:
            response = self._call(request, lambda: self.client.completions.create(
                prompt=request.prompt, **common))
            choice = response.choices[0]
            text = choice.text or ""
        completion = cut_at_stop(text, request.stop)
        reason = "length" if choice.finish_reason == "length" else "stop"
        usage = getattr(response, "usage", None)
        return Result(completion, reason, getattr(usage, "prompt_tokens", 0) or 0,
                      getattr(usage, "completion_tokens", 0) or 0)

    def _call(self, request: Request, send):
        openai = self.openai
        for attempt in range(self.max_retries + 1):
            try:
                return send()
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRY_STATUS or attempt == self.max_retries:
                    raise FtError(secrets.scrub(f"record {request.id}: endpoint answered "
                                              f"{exc.status_code}: {_message(exc)}")) from None
                why, wait = f"HTTP {exc.status_code}", _retry_after(exc)
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                if attempt == self.max_retries:
                    raise FtError(secrets.scrub(f"record {request.id}: {type(exc).__name__} after "
                                              f"{attempt + 1} attempts: {exc}")) from None
                why, wait = type(exc).__name__, None
            delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
            delay = max(delay, wait or 0.0)
            log(f"ft-infer: record {request.id}: {why}, retry {attempt + 1}/{self.max_retries} "
                f"in {delay:.1f}s", self.quiet)
            time.sleep(delay)
        raise AssertionError("unreachable")

def _message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])[:200]
    return str(getattr(exc, "message", exc))[:200]


def _retry_after(exc) -> float | None:
    try:
        value = exc.response.headers.get("retry-after")
        return min(float(value), 60.0) if value else None
    except (AttributeError, ValueError):
        return None
