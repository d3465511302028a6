"""Streaming: read a window of records, generate for all of it, write it back in input order.

Memory holds one window (`window` records), whatever the input size. The
engine sorts a window by prompt length into batches, so a larger window packs
batches better; an interrupted run loses at most the window in flight.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ft_infer.types import Engine, Request, to_request


@dataclass
class Stats:
    records: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.records} records, {self.prompt_tokens} prompt + {self.completion_tokens} "
                f"completion tokens in {self.seconds:.1f}s ({rate:.1f} records/s, "
                f"{self.tokens_per_second:.1f} tokens/s)")


def windows(records: Iterable[dict], size: int) -> Iterator[list[dict]]:
    it = iter(records)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def complete(record: dict, result, model_name: str) -> dict:
    """The record with ft-infer's keys added (every other key passes through untouched)."""
    out = dict(record)
    out.update(result.fields())
    out["model"] = model_name
    return out


def infer(records: Iterable[dict], engine: Engine, window: int = 1024,
          default_stop: tuple[str, ...] = (), stats: Stats | None = None,
          on_window: Callable[[Stats], None] | None = None) -> Iterator[dict]:
    """Yield every record with its completion, in input order, one window at a time."""
    stats = stats if stats is not None else Stats()
    start = time.monotonic()
    index = 0
    for chunk in windows(records, window):
        requests: list[Request] = []
        for record in chunk:
            requests.append(to_request(record, index, default_stop))
            index += 1
        results = engine.generate(requests)
        for record, result in zip(chunk, results, strict=True):
            stats.records += 1
            stats.prompt_tokens += result.prompt_tokens
            stats.completion_tokens += result.completion_tokens
            yield complete(record, result, engine.model_name)
        stats.seconds = time.monotonic() - start
        if on_window is not None:
            on_window(stats)
    stats.seconds = time.monotonic() - start
