"""What an engine is given and what it gives back.

A `Request` is one record's prompt (text or chat messages) and stop strings; a
`Result` is what ft-infer adds to that record. Engines take a list of requests
and return one result per request, in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ft_common.errors import InputError
from ft_common.records import record_id


@dataclass(frozen=True)
class GenerationOptions:
    """Decoding settings shared by every engine (greedy unless temperature > 0)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass(frozen=True)
class Request:
    id: str
    prompt: str | None = None  # plain text prompt
    messages: list[dict] | None = None  # chat messages [{role, content}]
    stop: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_chat(self) -> bool:
        return self.prompt is None


@dataclass(frozen=True)
class Result:
    completion: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int

    def fields(self) -> dict:
        return {
            "completion": self.completion,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class Engine(Protocol):
    """Anything with a name, a model label and `generate(requests) -> results`."""

    name: str
    model_name: str

    def generate(self, requests: list[Request]) -> list[Result]: ...


def to_request(record: dict, index: int, default_stop: tuple[str, ...] = ()) -> Request:
    """The request for one record: its `prompt` (or chat `messages`) and `stop` strings."""
    rid = record_id(record, index)
    prompt, messages = record.get("prompt"), record.get("messages")
    if prompt is not None and not isinstance(prompt, str):
        raise InputError(f"record {rid}: key 'prompt' has type {type(prompt).__name__}, expected a string")
    if messages is not None and not _valid_messages(messages):
        raise InputError(f"record {rid}: key 'messages' must be a list of {{role, content}} objects")
    if prompt is None and not messages:
        raise InputError(f"record {rid}: no 'prompt' or 'messages' to generate from")
    stop = record.get("stop", default_stop)
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list | tuple) or not all(isinstance(s, str) and s for s in stop):
        raise InputError(f"record {rid}: key 'stop' must be a list of non-empty strings")
    # Chat records (format "chat") go to the chat template / chat endpoint even when a prompt is present.
    if messages and (prompt is None or record.get("format") == "chat"):
        return Request(id=rid, messages=messages, stop=tuple(stop))
    return Request(id=rid, prompt=prompt, stop=tuple(stop))


def _valid_messages(messages) -> bool:
    return isinstance(messages, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    )
