"""The vLLM engine: offline batched generation with `LLM.generate` (GPU).

vllm is an extra (`pip install 'ft-infer[vllm]'`), imported only when this
engine is used. Prompts are tokenised here with the model's own tokenizer and
given to vLLM as token ids, and vLLM's generated ids are decoded by the same
code as the hf engine's (ft_infer.stops.finish), so the two engines give the
same completions for the same ids. Stop strings that are one special token go
to vLLM as `stop_token_ids`; the others as `stop` strings.
"""

from __future__ import annotations

import os

from ft_common.decode import eos_ids
from ft_common.errors import FtError, require_module
from ft_common.models import resolve_model
from ft_common.progress import log

from ft_infer.stops import StopPlan, finish, plan_stops
from ft_infer.types import GenerationOptions, Request, Result


def sampling_params(vllm, options: GenerationOptions, plan: StopPlan):
    """vLLM SamplingParams for one stop plan (greedy when temperature is 0)."""
    return vllm.SamplingParams(
        n=1,
        temperature=max(options.temperature, 0.0),
        top_p=options.top_p if not options.greedy else 1.0,
        max_tokens=options.max_new_tokens,
        seed=options.seed if not options.greedy else None,
        stop=list(plan.strings) or None,
        stop_token_ids=sorted(plan.token_ids) or None,
        include_stop_str_in_output=False,
        # Special tokens stay in the ids/text so a special-token stop can be seen; we decode ourselves.
        skip_special_tokens=False,
    )


class VLLMEngine:
    name = "vllm"

    def __init__(self, model: str, options: GenerationOptions | None = None, *,
                 dtype: str = "auto", tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.85, quiet: bool = False, llm_kwargs: dict | None = None):
        self.model_name = model
        self.options = options or GenerationOptions()
        self.dtype = dtype
        self.tensor_parallel_size = tensor_parallel_size
        self.gpu_memory_utilization = gpu_memory_utilization
        self.quiet = quiet
        self.llm_kwargs = llm_kwargs or {}
        self.llm = None

    def load(self) -> None:
        if self.llm is not None:
            return
        # `--engine auto` already asked torch whether CUDA is there, which marks this process unsafe
        # to fork; vLLM forks its engine core unless told to spawn it (a user's setting wins).
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        self.vllm = require_module("vllm", "ft-infer", "vllm")
        resolved = resolve_model(self.model_name, quiet=self.quiet)
        try:
            self.llm = self.vllm.LLM(
                model=resolved.path, dtype=self.dtype, seed=self.options.seed,
                tensor_parallel_size=self.tensor_parallel_size,
                gpu_memory_utilization=self.gpu_memory_utilization, **self.llm_kwargs,
            )
        except Exception as exc:
            raise FtError(f"{self.model_name}: vllm cannot load model ({type(exc).__name__}: {exc})") from exc
        # Our own copy of the tokenizer: the same one, and the same calls, as the hf engine's.
        from transformers import AutoTokenizer, GenerationConfig

        self.tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        generation_config = None
        try:
            generation_config = GenerationConfig.from_pretrained(resolved.path)
        except Exception:  # no generation_config.json: the tokenizer's eos is enough
            pass
        self.eos = eos_ids(self.tokenizer, generation_config)
        log(f"ft-infer: vllm engine: {self.model_name}", self.quiet)

    def encode(self, request: Request) -> list[int]:
        tok = self.tokenizer
        if not request.is_chat:
            return tok(request.prompt, add_special_tokens=True)["input_ids"]
        text = tok.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
        return tok(text, add_special_tokens=False)["input_ids"]

    def generate(self, requests: list[Request]) -> list[Result]:
        if not requests:
            return []
        self.load()
        prompts, params, plans = [], [], {}
        for request in requests:
            if request.stop not in plans:
                plan = plan_stops(self.tokenizer, request.stop, self.eos)
                plans[request.stop] = (plan, sampling_params(self.vllm, self.options, plan))
            prompts.append({"prompt_token_ids": self.encode(request)})
            params.append(plans[request.stop][1])
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        results = []
        for request, prompt, output in zip(requests, prompts, outputs, strict=True):
            plan = plans[request.stop][0]
            sample = output.outputs[0]
            results.append(finish(self.tokenizer, list(sample.token_ids), plan,
                                  len(prompt["prompt_token_ids"]), engine_reason=sample.finish_reason))
        return results
