"""The transformers engine: batched greedy (or sampled) decoding on CPU or GPU.

Our own decode loop over a KV cache (ft_common.decode, which ft-train's
`--select-by accuracy` runs too) rather than `model.generate`, so that

- each sequence stops at its own stop token ids and stop strings, and a batch
  ends the step after its last sequence stops;
- prompts are left-padded, with position ids that ignore the padding, so a
  sequence's greedy output does not depend on what it was batched with;
- the prefill keeps only the last position's logits (no [batch, len, vocab]);
- on a GPU the "all stopped?" check reads a flag copied one step earlier, so
  the CPU keeps queueing work instead of waiting for each step (at most one
  step more than needed);
- optionally (`static_cache`) a preallocated KV cache with fixed shapes, and
  (`compile`) the decode step compiled with torch.compile "reduce-overhead"
  (CUDA graphs): fewer kernel launches per token for small models on a GPU,
  paid for by a compile per batch shape (prompt widths are rounded up to 64
  to keep the number of shapes small). Worth it for long runs.

Requests are grouped by stop strings and sorted by prompt length before they
are cut into batches of `batch_size`, so batches hold prompts of similar length.

`on_step`, when set (ft-infer sets it to its progress line), is told the batch
and token of every decode step: on a CPU one batch of 20 records can take
minutes, and a count of finished records alone would say nothing until its end.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ft_common.decode import attention_without_cudnn, decode, eos_ids, pad_id
from ft_common.errors import FtError, InputError
from ft_common.models import resolve_model
from ft_common.progress import log

from ft_infer.stops import StopPlan, finish, plan_stops
from ft_infer.types import GenerationOptions, Request, Result


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]


class HFEngine:
    name = "hf"

    def __init__(self, model: str, options: GenerationOptions | None = None, *,
                 batch_size: int | None = None, device: str | None = None, dtype: str = "auto",
                 static_cache: bool = False, compile: bool = False, quiet: bool = False):
        self.model_name = model
        self.options = options or GenerationOptions()
        self.device_name = device
        self.dtype_name = dtype
        self.batch_size = batch_size
        self.static_cache = static_cache or compile
        self.compile = compile
        self.quiet = quiet
        self._cache = None  # the static cache, reused while batches keep its shape
        self._criteria = {}  # stop strings -> StopStringCriteria (seconds to build for a large vocabulary)
        self.compiled = None  # the decode step under torch.compile (`compile`)
        self.model = None  # loaded on the first generate() call
        self.tokenizer = None
        self.on_step: Callable[[str], None] | None = None  # told "batch B/N, token T/M" each decode step

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> None:
        if self.model is not None:
            return
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar in a pipe
        resolved = resolve_model(self.model_name, quiet=self.quiet)
        device = self.device_name or default_device()
        dtype = resolve_dtype(self.dtype_name, device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolved.path)
            model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype)
            model.to(device).eval()
        except Exception as exc:  # transformers raises many kinds for a bad folder
            raise FtError(f"{self.model_name}: cannot load model ({type(exc).__name__}: {exc})") from exc
        tokenizer.padding_side = "left"
        self.pad_id = pad_id(tokenizer)
        self.eos = eos_ids(tokenizer, model.generation_config)
        self.tokenizer, self.model, self.device = tokenizer, model, torch.device(device)
        if self.batch_size is None:
            # A decode step of a small model costs about the same at any batch size (it is bound by
            # kernel launches), so on a GPU one batch takes as many prompts as memory allows.
            self.batch_size = 1024 if self.device.type == "cuda" else 32
        if self.compile:
            self.compiled = torch.compile(model.forward, mode="reduce-overhead", dynamic=False)
        log(f"ft-infer: hf engine: {self.model_name} on {device} ({str(dtype).removeprefix('torch.')})", self.quiet)

    # -- prompts ---------------------------------------------------------------------------
    def encode(self, request: Request) -> list[int]:
        tok = self.tokenizer
        if not request.is_chat:
            ids = tok(request.prompt, add_special_tokens=True)["input_ids"]
        elif not getattr(tok, "chat_template", None):
            raise InputError(f"record {request.id}: chat messages, but {self.model_name} has no chat template")
        else:
            text = tok.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
            ids = tok(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise InputError(f"record {request.id}: the prompt is empty (no tokens to continue)")
        return ids

    # -- generation ------------------------------------------------------------------------
    def generate(self, requests: list[Request]) -> list[Result]:
        if not requests:
            return []
        self.load()
        encoded = [self.encode(r) for r in requests]
        results: list[Result | None] = [None] * len(requests)
        # Group by stop strings (one stop plan per batch), then sort by prompt length.
        order = sorted(range(len(requests)), key=lambda i: (requests[i].stop, len(encoded[i])))
        batch_size = min(self.batch_size, self._fits(max(len(e) for e in encoded) + self.options.max_new_tokens))
        batches, start = [], 0
        while start < len(order):
            stop = requests[order[start]].stop
            end = start
            while end < len(order) and end - start < batch_size and requests[order[end]].stop == stop:
                end += 1
            batches.append(order[start:end])
            start = end
        for number, batch in enumerate(batches, start=1):
            plan = plan_stops(self.tokenizer, requests[batch[0]].stop, self.eos)
            with attention_without_cudnn(self.device):
                outputs = self.decode([encoded[i] for i in batch], plan, self._step_reporter(number, len(batches)))
            for i, generated in zip(batch, outputs, strict=True):
                results[i] = finish(self.tokenizer, generated, plan, len(encoded[i]))
        return results  # type: ignore[return-value]

    def _step_reporter(self, number: int, batches: int) -> Callable[[int], None] | None:
        if self.on_step is None:
            return None
        note, new = self.on_step, self.options.max_new_tokens
        return lambda step: note(f"batch {number}/{batches}, token {step}/{new}")

    def decode(self, prompts: list[list[int]], plan: StopPlan,
               on_step: Callable[[int], None] | None = None) -> list[list[int]]:
        """Generate for one batch (ft_common.decode); each row's ids end at (and include) its stop token.
        `on_step(n)` is called after the n-th token of the batch (host-side only: no device sync)."""
        import torch

        opts, pick = self.options, None
        if not opts.greedy:
            generator = torch.Generator(device=self.device).manual_seed(opts.seed)
            pick = functools.partial(_sample, opts=opts, generator=generator)
        return decode(self.model, prompts, device=self.device, pad=self.pad_id, new=opts.max_new_tokens,
                      stop_ids=plan.token_ids, pick=pick,
                      stop_strings=self._criterion(plan.strings) if plan.strings else None,
                      static_cache=self._static if self.static_cache else None,
                      compiled=self.compiled, on_step=on_step)

    def _fits(self, length: int) -> int:
        """The most sequences of `length` tokens whose KV cache fits in half the free GPU memory."""
        import torch

        if self.device.type != "cuda":
            return self.batch_size
        cfg = self.model.config.get_text_config()
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        per_token = 2 * cfg.num_hidden_layers * kv_heads * head_dim * self.model.dtype.itemsize
        free, _ = torch.cuda.mem_get_info(self.device)
        return max(1, int(0.5 * free / (per_token * length)))

    def _criterion(self, strings: tuple[str, ...]):
        """transformers' StopStringCriteria (stop strings matched on the device), built once per stop list."""
        from transformers.generation.stopping_criteria import StopStringCriteria

        if strings not in self._criteria:
            self._criteria[strings] = StopStringCriteria(self.tokenizer, list(strings))
        return self._criteria[strings]

    def _static(self, batch: int, length: int):
        """A StaticCache for (batch, length), reused (and reset) while the shape stays the same."""
        from transformers import StaticCache

        if self._cache is None or self._cache_shape != (batch, length):
            self._cache = StaticCache(config=self.model.config, max_cache_len=length)
            self._cache_shape = (batch, length)
        else:
            self._cache.reset()
        return self._cache


def _sample(logits, opts: GenerationOptions, generator):
    """Next ids drawn at opts.temperature from the top_p nucleus."""
    import torch

    probs = torch.softmax(logits.float() / opts.temperature, dim=-1)
    if opts.top_p < 1.0:
        sorted_probs, index = probs.sort(dim=-1, descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < opts.top_p  # always keeps the top token
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter_(-1, index, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
