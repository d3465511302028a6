"""The openai engine against a small OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ft_common.errors import FtError
from ft_infer import GenerationOptions, infer
from ft_infer.engines.openai import OpenAIEngine

BIN = Path(sys.executable).parent / "ft-infer"
KEY = "sk-test-SECRET-0123456789"


class FakeOpenAI(ThreadingHTTPServer):
    """Completions and chat completions; answers 429 once per prompt listed in `rate_limit_once`."""

    daemon_threads = True

    def __init__(self, delay: float = 0.0, always: int | None = None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.delay, self.always = delay, always
        self.rate_limit_once: set[str] = set()
        self.requests: list[dict] = []
        self.auth: set[str] = set()
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.requests.append({"path": self.path, **body})
            srv.auth.add(self.headers.get("Authorization", ""))
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            time.sleep(srv.delay)
            text = body.get("prompt") or body["messages"][-1]["content"]
            if srv.always:
                # Real servers echo (part of) a bad key back; the engine must not pass it on.
                return self.reply(srv.always, {"error": {"message": f"server sad; key was {KEY}"}})
            with srv.lock:
                limited = text in srv.rate_limit_once
                srv.rate_limit_once.discard(text)
            if limited:
                return self.reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
            answer = f"echo:{text}<END_A> trailing"
            usage = {"prompt_tokens": len(text.split()), "completion_tokens": 3, "total_tokens": 0}
            if self.path.endswith("/chat/completions"):
                choice = {"index": 0, "finish_reason": "stop",
                          "message": {"role": "assistant", "content": answer.split("<END_A>")[0]}}
                payload = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                           "choices": [choice], "usage": usage}
            else:
                reason = "length" if "long" in text else "stop"
                choice = {"index": 0, "finish_reason": reason, "text": answer, "logprobs": None}
                payload = {"id": "c", "object": "text_completion", "created": 0, "model": body["model"],
                           "choices": [choice], "usage": usage}
            self.reply(200, payload)
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def reply(self, status, payload, headers=None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    srv = FakeOpenAI()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def records(n: int) -> list[dict]:
    return [{"id": f"r/{i}", "prompt": f"prompt {i}", "stop": ["<END_A>"], "keep": i} for i in range(n)]


def test_cli_prompts_chat_retry_and_no_key_leak(server):
    server.rate_limit_once = {"prompt 1"}
    recs = records(3) + [{"id": "chat/0", "format": "chat", "messages": [{"role": "user", "content": "hi"}]},
                         {"id": "r/long", "prompt": "a long one"}]
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    proc = subprocess.run([str(BIN), "--engine", "openai", "-m", "fake-model", "--base-url", server.url,
                           "--max-new-tokens", "7", "--seed", "5"],
                          input="".join(json.dumps(r) + "\n" for r in recs), capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in out] == [r["id"] for r in recs]
    assert out[0]["completion"] == "echo:prompt 0"  # cut at the stop string
    assert out[0]["finish_reason"] == "stop" and out[0]["keep"] == 0 and out[0]["model"] == "fake-model"
    assert out[0]["prompt_tokens"] == 2 and out[0]["completion_tokens"] == 3
    assert out[1]["completion"] == "echo:prompt 1"  # after one 429
    assert out[3]["completion"] == "echo:hi"  # the chat endpoint
    assert out[4]["finish_reason"] == "length"
    assert "HTTP 429, retry 1/5" in proc.stderr
    paths = [r["path"] for r in server.requests]
    assert paths.count("/v1/chat/completions") == 1 and paths.count("/v1/completions") == 5  # 4 + 1 retry
    sent = next(r for r in server.requests if r.get("prompt") == "prompt 0")
    assert sent["max_tokens"] == 7 and sent["temperature"] == 0 and sent["seed"] == 5
    assert sent["stop"] == ["<END_A>"]
    assert server.auth == {f"Bearer {KEY}"}  # the key went to the server, and nowhere else
    assert KEY not in proc.stdout and KEY not in proc.stderr


def test_concurrency_overlaps_requests(server):
    server.delay = 0.3
    engine = OpenAIEngine("m", GenerationOptions(), base_url=server.url, concurrency=4, quiet=True)
    engine.load()  # time the requests, not the client's start
    start = time.monotonic()
    out = list(infer(records(8), engine, window=8))
    took = time.monotonic() - start
    assert [r["id"] for r in out] == [f"r/{i}" for i in range(8)]
    assert server.max_in_flight == 4
    assert took < 8 * 0.3 * 0.75  # two rounds of four, not eight one at a time


def test_persistent_errors_fail_without_the_key(server, monkeypatch):
    server.always = 500
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    engine = OpenAIEngine("m", GenerationOptions(), base_url=server.url, max_retries=2, backoff=0.01, quiet=True)
    with pytest.raises(FtError) as info:
        list(infer(records(1), engine))
    message = str(info.value)
    assert "record r/0: endpoint answered 500" in message
    assert KEY not in message and "***" in message
    assert len(server.requests) == 3  # one try and two retries


def test_client_errors_are_not_retried(server):
    server.always = 400
    engine = OpenAIEngine("m", GenerationOptions(), base_url=server.url, backoff=0.01, quiet=True)
    with pytest.raises(FtError, match="answered 400"):
        list(infer(records(1), engine))
    assert len(server.requests) == 1


def test_no_key_and_no_base_url_is_a_usage_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    engine = OpenAIEngine("m", GenerationOptions(), quiet=True)
    with pytest.raises(FtError, match="OPENAI_API_KEY"):
        list(infer(records(1), engine))
