"""What `ft-infer` does between its flags and its output, as library functions.

`infer_file`: the whole command (read, generate, write, the summary on stderr).
`input_records`: the records to generate for, after --limit and --resume, and how many
(for the ETA). `generate`: the completions, from one local engine or from Ray Data
replicas (--ray); both build the engine from the same `engine_args` (make_engine's
keyword arguments), so a flag is passed on in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ft_common.cli import take
from ft_common.errors import UsageError
from ft_common.jsonl import STDIO, display_name, open_output, read_records
from ft_common.progress import Progress, log

from ft_infer.batching import Stats, infer
from ft_infer.engines import make_engine, pick_engine
from ft_infer.resume import resume_point, skip_done, unique_ids


def infer_file(input: str, output: str, engine_args: dict, *, window: int | None = None,
               default_stop: tuple[str, ...] = (), limit: int | None = None, resume: bool = False,
               use_ray: bool = False, ray_address: str | None = None, replicas: int | None = None,
               quiet: bool = False) -> Stats:
    """`ft-infer INPUT -o OUTPUT`: every record of INPUT with its completion, written to OUTPUT
    (appended to with `resume`); progress and a summary line on stderr. `engine_args` are
    make_engine's keyword arguments, with `name` as given (auto is resolved here)."""
    engine_args = {**engine_args, "name": pick_engine(engine_args["name"])}
    records, total = input_records(input, output, limit=limit, resume=resume, quiet=quiet)
    if window is None:
        window = default_window(engine_args["name"], engine_args.get("batch_size"), engine_args.get("concurrency", 8))
    stats = Stats()
    progress = Progress("ft-infer", total=total, quiet=quiet)
    results = generate(records, engine_args, window=window, default_stop=default_stop, stats=stats,
                       progress=progress, use_ray=use_ray, ray_address=ray_address, replicas=replicas, quiet=quiet)
    with open_output(output, append=resume) as writer:
        writer.write_all(results)
    progress.close()
    if stats.records:
        log(f"ft-infer: {stats.summary()}", quiet)
    return stats


def input_records(path: str, output: str, *, limit: int | None = None, resume: bool = False,
                  quiet: bool = False) -> tuple[Iterator[dict], int | None]:
    """(records to generate for, how many: None when unknown, as on stdin without --limit)."""
    if resume and output == STDIO:
        raise UsageError("--resume needs -o/--output: the file to resume")
    records = take(unique_ids(read_records(path, line_numbers=True), display_name(path)), limit)
    total = count_lines(path, limit)
    if resume:
        done = resume_point(output)  # cuts a torn last line, keeps a finished one
        if done:
            log(f"ft-infer: resuming {output}: {len(done)} records done", quiet)
        records = skip_done(records, done)
        total = max(total - len(done), 0) if total is not None else None
    return records, total


def count_lines(path: str, limit: int | None) -> int | None:
    """The number of records in an input file, for the ETA (None for stdin)."""
    if path == STDIO:
        return limit
    try:
        with open(path, "rb") as fh:
            n = sum(1 for line in fh if line.strip())
    except OSError:
        return None
    return min(n, limit) if limit is not None else n


def default_window(engine: str, batch_size: int | None, concurrency: int) -> int:
    """Records read ahead: enough to keep every request slot or batch full a few times over."""
    return 8 * concurrency if engine == "openai" else 4 * (batch_size or 1024)


def generate(records: Iterable[dict], engine_args: dict, *, window: int, default_stop: tuple[str, ...] = (),
             stats: Stats, progress: Progress, use_ray: bool = False, ray_address: str | None = None,
             replicas: int | None = None, quiet: bool = False) -> Iterator[dict]:
    """Every record with its completion, in input order; `progress` follows each window."""

    def on_window(s: Stats) -> None:
        progress.update(s.records - progress.count, extra=f"{s.tokens_per_second:.0f} tok/s")

    if use_ray:
        from ft_infer.ray_runner import infer_ray

        # Replicas stay quiet: their output would interleave on the driver's stderr.
        return infer_ray(records, {**engine_args, "quiet": True}, address=ray_address, replicas=replicas,
                         default_stop=default_stop, stats=stats, on_window=on_window, quiet=quiet)
    engine = make_engine(**engine_args, quiet=quiet)
    if hasattr(engine, "on_step"):
        engine.on_step = progress.note  # hf: a live line within one batch, not only between windows
    return infer(records, engine, window=window, default_stop=default_stop, stats=stats, on_window=on_window)
