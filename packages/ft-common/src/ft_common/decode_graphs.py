"""The decode step replayed from a CUDA graph, for `ft_common.decode.decode(compiled=...)`.

A small model's decode step is bound by kernel launches: SmolLM2-135M's 30 layers cost about
50 ms a token on the lent GPU host (about 37 us of CPU a launch), whatever the batch. Over a
static KV cache every step has the same shapes, so the step can be captured once and replayed
as one launch. Unlike `torch.compile(mode="reduce-overhead")` (ft-infer's `--compile`) there
is nothing to compile: capturing costs one step.

`GraphedDecodeStep(model)` is called as decode() calls the model for a step (one token per row,
the whole 4D mask, `cache_position`, the StaticCache). The first call of a cache runs eagerly on
the stream the graph will be captured on (lazy initialisation, cuBLAS's set-up and kernel
choices happen before any capture), the second captures, and every call after copies its inputs
into the graph's buffers and replays. What it returns (the captured output, whose logits live in
the graph's memory) holds each replay's logits until the next call; decode() takes the next token
from them first. A new cache (another batch) is captured anew. If capturing fails (an op that
waits on the host, in some model's forward), the step runs eagerly from then on, for every later
batch too, `failed` says why and `on_failure(why)`, if given, is told once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

STEP_INPUTS = ("input_ids", "attention_mask", "position_ids", "cache_position")


def failure_reason(exc: BaseException) -> str:
    """A failure's reason in one short line (a capture's, a compile's): the exception's type and
    first line."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


class CudaGraphs:
    """Capture and replay on one side stream (torch.cuda) of `device` (None: the current one);
    ft-train's step graphs use its stream, warm and drain too."""

    def __init__(self, device=None):
        import torch

        self.device = device
        self.stream = torch.cuda.Stream(device)

    def warm(self, fn: Callable):
        """fn() on the capture stream, ordered after and before the current stream's work."""
        import torch

        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            out = fn()
        current.wait_stream(self.stream)
        return out

    def capture(self, fn: Callable):
        """(replay, fn's output): fn recorded, not run (so what it changes in place, such as the
        cache's length counter, changes once per replay); replay() runs it into that output's memory."""
        import torch

        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            out = fn()
        return graph.replay, out

    def drain(self) -> None:
        """After a failed capture: let its work finish before going on."""
        import torch

        with contextlib.suppress(Exception):
            torch.cuda.synchronize(self.device)


class GraphedDecodeStep:
    def __init__(self, model, graphs=None, on_failure: Callable[[str], None] | None = None):
        self.model = model
        self.on_failure = on_failure
        self.graphs = graphs  # CudaGraphs(), made on first use (tests give their own)
        self.replay: Callable | None = None
        self.cache = None  # the StaticCache the graph writes into
        self.buffers: dict = {}
        self.out = None  # the captured output: each replay's logits
        self.captures = 0
        self.failed: str | None = None

    def __call__(self, **kw):
        from ft_common.decode import cache_kwarg

        cache = kw.get(cache_kwarg(self.model))
        if self.failed or cache is None:
            return self.model(**kw)
        self.graphs = self.graphs or CudaGraphs()
        if cache is not self.cache:  # a new batch: its first step eagerly, then capture
            self.release()
            self.cache = cache
            return self.graphs.warm(lambda: self.model(**kw))
        if self.replay is None and not self._capture(kw):
            return self.model(**kw)
        for name in STEP_INPUTS:
            self.buffers[name].copy_(kw[name])
        self.replay()
        return self.out

    def step_begin(self) -> None:
        """decode() calls this before each step (torch.compile's graphs need to be told); ours do not."""

    def _capture(self, kw: dict) -> bool:
        self.buffers = {name: kw[name].clone() for name in STEP_INPUTS}
        try:
            self.replay, self.out = self.graphs.capture(lambda: self.model(**{**kw, **self.buffers}))
        except Exception as exc:  # the forward waited on the host, or an op cannot be captured
            self.failed = failure_reason(exc)
            self.release()
            self.graphs.drain()
            if self.on_failure is not None:
                self.on_failure(self.failed)
            return False
        self.captures += 1
        return True

    def release(self) -> None:
        """Drop the graph and its memory (the caller's cache stays theirs)."""
        self.replay, self.out, self.cache, self.buffers = None, None, None, {}
