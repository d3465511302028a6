"""Engines: hf (transformers), vllm and openai. Each is imported only when chosen."""

from __future__ import annotations

import importlib.util

from ft_common.errors import UsageError

from ft_infer.types import Engine, GenerationOptions

ENGINES = ("auto", "vllm", "hf", "openai")


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pick_engine(name: str) -> str:
    """`auto` is vllm when it is importable and a CUDA GPU is present, else hf."""
    if name != "auto":
        return name
    if not surely_hf(name) and cuda_available():
        return "vllm"
    return "hf"


def surely_hf(name: str) -> bool:
    """Whether `name` resolves to the hf engine, told without importing torch (as pick_engine
    may): hf itself, or auto where vLLM is not installed."""
    return name == "hf" or (name == "auto" and importlib.util.find_spec("vllm") is None)


def make_engine(name: str, model: str | None, options: GenerationOptions, *, batch_size: int | None = None,
                device: str | None = None, dtype: str = "auto", base_url: str | None = None,
                concurrency: int = 8, max_retries: int = 5, timeout: float = 60.0,
                tensor_parallel_size: int = 1, static_cache: bool = False, compile: bool = False,
                quiet: bool = False) -> Engine:
    """An engine that loads its model lazily, on its first generate() call."""
    name = pick_engine(name)
    if not model:
        raise UsageError("-m/--model is required")
    if name == "hf":
        from ft_infer.engines.hf import HFEngine

        return HFEngine(model, options, batch_size=batch_size, device=device, dtype=dtype,
                        static_cache=static_cache, compile=compile, quiet=quiet)
    if name == "vllm":
        from ft_infer.engines.vllm import VLLMEngine

        return VLLMEngine(model, options, dtype=dtype, tensor_parallel_size=tensor_parallel_size, quiet=quiet)
    if name == "openai":
        from ft_infer.engines.openai import OpenAIEngine

        return OpenAIEngine(model, options, base_url=base_url, concurrency=concurrency,
                            max_retries=max_retries, timeout=timeout, quiet=quiet)
    raise UsageError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
