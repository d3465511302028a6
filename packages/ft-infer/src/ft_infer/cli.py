"""ft-infer command line: a thin click layer over ft_infer.run.infer_file (read, generate, write)."""

from __future__ import annotations

import click
from ft_common.cli import (
    CONTEXT_SETTINGS,
    common_options,
    input_argument,
    limit_option,
    model_option,
    output_option,
    run,
    seed_option,
)
from ft_common.lean_imports import hide_unused

from ft_infer.engines import ENGINES, surely_hf
from ft_infer.run import infer_file
from ft_infer.types import GenerationOptions


@click.command(context_settings=CONTEXT_SETTINGS)
@input_argument()
@output_option()
@model_option(help="Model: a local folder, a .gguf file or a hub id; for --engine openai, the endpoint's model name.")
@click.option("--engine", type=click.Choice(ENGINES), default="auto", show_default=True, envvar="FT_INFER_ENGINE",
              help="vllm (GPU), hf (transformers, CPU or GPU), openai (any OpenAI-compatible endpoint); "
                   "auto: vllm when importable and a GPU is present, else hf. [env FT_INFER_ENGINE]")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=256, show_default=True,
              help="Stop a completion after this many tokens (finish_reason 'length').")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Sampling temperature; 0 is greedy.")
@click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=1.0, show_default=True,
              help="Nucleus sampling (with --temperature > 0).")
@seed_option()
@click.option("--stop", "default_stop", multiple=True,
              help="A stop string for records that have no 'stop' key (repeatable).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="hf: sequences decoded together [default: 1024 on a GPU, fewer when memory is short; 32 on a CPU].")
@click.option("--window", type=click.IntRange(min=1), default=None,
              help="Records read ahead and sorted by length into batches; written back in input order "
                   "[default: 4 batches; openai: 8x concurrency].")
@click.option("--dtype", type=click.Choice(["auto", "bfloat16", "float16", "float32"]), default="auto",
              show_default=True, help="hf/vllm weights dtype; auto: bfloat16 on a GPU, float32 on a CPU.")
@click.option("--device", default=None, help="hf: torch device [default: cuda when present, else cpu].")
@click.option("--static-cache", is_flag=True, help="hf: a preallocated KV cache of fixed shape.")
@click.option("--compile", "compile_", is_flag=True,
              help="hf: torch.compile the decode step (CUDA graphs; implies --static-cache); "
                   "a compile per batch shape, so for long runs.")
@click.option("--base-url", envvar="OPENAI_BASE_URL", default=None,
              help="openai: the endpoint, e.g. http://localhost:8000/v1. The key comes from "
                   "OPENAI_API_KEY only. [env OPENAI_BASE_URL]")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True,
              help="openai: requests in flight at once.")
@click.option("--max-retries", type=click.IntRange(min=0), default=5, show_default=True,
              help="openai: retries on 429, 5xx, timeouts (exponential backoff).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="openai: seconds per request.")
@click.option("--tensor-parallel-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="vllm: GPUs per model replica.")
@click.option("--resume", is_flag=True,
              help="With -o: skip ids already in the output file and append the rest.")
@click.option("--ray", "use_ray", is_flag=True,
              help="Run the engine over a Ray Data dataset, one replica per GPU of the Ray cluster.")
@click.option("--ray-address", envvar="RAY_ADDRESS", default=None,
              help="Ray cluster to join [default: start a local one]. [env RAY_ADDRESS]")
@click.option("--replicas", type=click.IntRange(min=1), default=None,
              help="--ray: model replicas [default: the cluster's GPUs / --tensor-parallel-size].")
@limit_option()
@common_options
def cli(input, output, model, engine, max_new_tokens, temperature, top_p, seed, default_stop, batch_size,
        window, dtype, device, static_cache, compile_, base_url, concurrency, max_retries, timeout,
        tensor_parallel_size, resume, use_ray, ray_address, replicas, limit, quiet):
    """Generate a completion for every record until its stop token.

    Reads records with a `prompt` (or chat `messages`) and `stop` strings, and
    writes each back with `completion`, `finish_reason` (stop/length), `model`,
    `prompt_tokens` and `completion_tokens`; every other key passes through.
    The model loads when the first record arrives.

    \b
      ft-prep TASK --split valid | ft-infer -m ckpt/best | ft-score TASK
      ft-infer -m ckpt/best --engine hf --batch-size 64 valid.jsonl -o out.jsonl --resume
      ft-prep generic data.jsonl --format chat | ft-infer --engine openai -m gpt-4o --concurrency 16
    """
    if not use_ray and surely_hf(engine):  # the hf engine in this process (ft_common.lean_imports)
        hide_unused()
    engine_args = {"name": engine, "model": model, "batch_size": batch_size, "device": device, "dtype": dtype,
                   "static_cache": static_cache, "compile": compile_, "base_url": base_url,
                   "concurrency": concurrency, "max_retries": max_retries, "timeout": timeout,
                   "tensor_parallel_size": tensor_parallel_size,
                   "options": GenerationOptions(max_new_tokens=max_new_tokens, temperature=temperature,
                                                top_p=top_p, seed=seed)}
    infer_file(input, output, engine_args, window=window, default_stop=tuple(default_stop), limit=limit,
               resume=resume, use_ray=use_ray, ray_address=ray_address, replicas=replicas, quiet=quiet)


def main() -> None:
    run(cli, "ft-infer")
