"""ft-infer command line: a thin click layer over ft_infer.infer."""

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
    take,
)
from ft_common.errors import UsageError
from ft_common.jsonl import STDIO, display_name, open_output, read_records
from ft_common.progress import Progress, log

from ft_infer.batching import Stats, infer
from ft_infer.engines import ENGINES, make_engine, pick_engine
from ft_infer.resume import resume_point, skip_done, unique_ids
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
      ft-prep viggo --split valid | ft-infer -m ckpt/best | ft-score viggo
      ft-infer -m ckpt/best --engine hf --batch-size 64 valid.jsonl -o out.jsonl --resume
      ft-prep viggo --format chat | ft-infer --engine openai -m gpt-4o --concurrency 16 | ft-score viggo
    """
    options = GenerationOptions(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
    chosen = pick_engine(engine)
    if resume and output == STDIO:
        raise UsageError("--resume needs -o/--output: the file to resume")
    records = take(unique_ids(read_records(input, line_numbers=True), display_name(input)), limit)
    total = _count_lines(input, limit)
    if resume:
        done = resume_point(output)  # cuts a torn last line, keeps a finished one
        if done:
            log(f"ft-infer: resuming {output}: {len(done)} records done", quiet)
        records = skip_done(records, done)
        total = max(total - len(done), 0) if total is not None else None
    if window is None:
        window = 8 * concurrency if chosen == "openai" else 4 * (batch_size or 1024)
    stats = Stats()
    progress = Progress("ft-infer", total=total, quiet=quiet)

    def on_window(s: Stats) -> None:
        progress.update(s.records - progress.count, extra=f"{s.tokens_per_second:.0f} tok/s")

    if use_ray:
        from ft_infer.ray_runner import infer_ray

        engine_args = {"name": chosen, "model": model, "options": options, "batch_size": batch_size,
                       "device": device, "dtype": dtype, "static_cache": static_cache,
                       "compile": compile_, "base_url": base_url, "concurrency": concurrency,
                       "max_retries": max_retries, "timeout": timeout,
                       "tensor_parallel_size": tensor_parallel_size, "quiet": True}
        results = infer_ray(records, engine_args, address=ray_address, replicas=replicas,
                            default_stop=tuple(default_stop), stats=stats, on_window=on_window, quiet=quiet)
    else:
        eng = make_engine(chosen, model, options, batch_size=batch_size, device=device, dtype=dtype,
                          static_cache=static_cache, compile=compile_, base_url=base_url,
                          concurrency=concurrency, max_retries=max_retries, timeout=timeout,
                          tensor_parallel_size=tensor_parallel_size, quiet=quiet)
        if hasattr(eng, "on_step"):
            eng.on_step = progress.note  # hf: a live line within one batch, not only between windows
        results = infer(records, eng, window=window, default_stop=tuple(default_stop), stats=stats,
                        on_window=on_window)
    with open_output(output, append=resume) as writer:
        writer.write_all(results)
    progress.close()
    if stats.records:
        log(f"ft-infer: {stats.summary()}", quiet)


def _count_lines(path: str, limit: int | None) -> int | None:
    """The number of records in an input file, for the ETA (None for stdin)."""
    if path == STDIO:
        return limit
    try:
        with open(path, "rb") as fh:
            n = sum(1 for line in fh if line.strip())
    except OSError:
        return None
    return min(n, limit) if limit is not None else n


def main() -> None:
    run(cli, "ft-infer")
